//go:build tools

// Pins kube-score (go.mod) for operator/tests/kube_score.rs; build.sh builds it.
package tools

import _ "github.com/zegl/kube-score/cmd/kube-score"
