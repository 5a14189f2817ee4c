// CoreDNS for the offline kind node image (../../node-image.sh): the plugins that kubeadm's
// Corefile names (errors, health, ready, kubernetes, prometheus, forward, cache, loop, reload,
// loadbalance), plus those of the real node's trimmed build. Built against the CoreDNS version
// pinned in e2e/cluster/tools/coredns/go.mod (node-image.sh copies that go.mod beside this file).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

// The plugins above, in upstream's order (plugin.cfg).
func init() {
	dnsserver.Directives = []string{
		"reload", "bind", "ready", "health", "prometheus", "errors", "log", "loadbalance",
		"cache", "template", "kubernetes", "loop", "forward",
	}
}

func main() {
	coremain.Run()
}
