// CoreDNS for the real node of ../../node-up.sh, built as a library with only
// the plugins a test cluster needs: cluster.local names from the API server
// (kubernetes), no forwarding (nothing may leave this machine), so every other
// name fails. Upstream's coredns.go imports all ~60 plugins (AWS, Azure, GCP
// SDKs ...); this is how CoreDNS documents building a trimmed binary.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

// The plugins above, in upstream's order (plugin.cfg).
func init() {
	dnsserver.Directives = []string{
		"bind", "ready", "health", "errors", "log", "cache", "template", "kubernetes",
	}
}

func main() {
	coremain.Run()
}
