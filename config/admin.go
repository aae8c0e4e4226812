package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultMaxIdentityLabels bounds the SPIFFE IDs that get label values of
// their own in the metrics; the others are counted under "other".
const DefaultMaxIdentityLabels = 100

// Admin is the admin listener: /metrics, /healthz, /readyz, the status
// page and, when Pprof is set, /debug/pprof/. It never serves application
// traffic.
type Admin struct {
	// Listen: "" = off (the default); host:port on a loopback address,
	// like 127.0.0.1:9902; or an absolute Unix socket path.
	Listen string
	// AllowNonLoopback (key allow_non_loopback, default false) accepts a
	// listen address that is not loopback, like 0.0.0.0:9902 for a
	// Kubernetes probe on the pod's IP: the status page shows every
	// process's identity to whoever reaches it.
	AllowNonLoopback bool
	// Pprof (default false) serves Go's profiler under /debug/pprof/.
	Pprof bool
	// MaxIdentityLabels (key max_identity_labels, default 100, 1-10000):
	// SPIFFE IDs that get label values of their own; the rest are "other".
	MaxIdentityLabels int
	Line              int // line of the admin section; 0 when absent
}

// IsUnix reports whether Listen is a Unix socket path.
func (a Admin) IsUnix() bool { return strings.HasPrefix(a.Listen, "/") }

// admin decodes the admin section.
func (w *walker) admin(n *yaml.Node, a *Admin) {
	f, ok := w.mapping(n, "admin", keys("admin")...)
	if !ok {
		return
	}
	a.Line = f.line
	if v := f.get("allow_non_loopback"); v != nil {
		a.AllowNonLoopback, _ = w.boolean(v, f.key("allow_non_loopback"))
	}
	if v := f.get("pprof"); v != nil {
		a.Pprof, _ = w.boolean(v, f.key("pprof"))
	}
	a.MaxIdentityLabels, _ = w.integer(f.get("max_identity_labels"), f.key("max_identity_labels"), 1, 10000)
	v := f.get("listen")
	s, ok := w.str(v, f.key("listen"))
	if !ok || s == "" {
		return
	}
	if strings.HasPrefix(s, "/") {
		a.Listen, _ = w.socketPath(v, f.key("listen"))
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		w.add(v.Line, f.key("listen"), "%q is neither host:port (like 127.0.0.1:9902) nor an absolute Unix socket path", s)
		return
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		w.add(v.Line, f.key("listen"), "%q: the port must be a number between 1 and 65535, like 127.0.0.1:9902", s)
		return
	}
	loopback := host == "localhost"
	if ip, err := netip.ParseAddr(host); err == nil {
		loopback = ip.IsLoopback()
	} else if host != "localhost" {
		w.add(v.Line, f.key("listen"), "%q: write an IP address, like 127.0.0.1:9902, not a host name", s)
		return
	}
	if !loopback && !a.AllowNonLoopback {
		w.add(v.Line, f.key("listen"), "%q is not a loopback address: the status page and metrics show every process's identity "+
			"to whoever reaches it; use 127.0.0.1:9902 or a Unix socket path, or set admin.allow_non_loopback: true "+
			"(a Kubernetes probe on the pod's IP) and firewall the port", s)
		return
	}
	a.Listen = s
}
