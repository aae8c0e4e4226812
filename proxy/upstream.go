package proxy

import (
	"github.com/procmesh/procmesh/proxy/internal/upstream"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// UpstreamOptions tune upstream connections (upstream.Options documents
// each field). Zero values take defaults.
type UpstreamOptions = upstream.Options

// Defaults of UpstreamOptions.
const (
	DefaultUpstreamDialTimeout            = upstream.DefaultDialTimeout
	DefaultUpstreamIdleConnTimeout        = upstream.DefaultIdleConnTimeout
	DefaultUpstreamMaxIdlePerPool         = upstream.DefaultMaxIdlePerPool
	DefaultUpstreamMaxResponseHeaderBytes = upstream.DefaultMaxResponseHeaderBytes
	DefaultH2ReadIdleTimeout              = upstream.DefaultH2ReadIdleTimeout
	DefaultH2PingTimeout                  = upstream.DefaultH2PingTimeout
	DefaultQUICMaxIdleTimeout             = upstream.DefaultQUICMaxIdleTimeout
	DefaultQUICMaxStreamReceiveWindow     = upstream.DefaultQUICMaxStreamReceiveWindow
	DefaultQUICMaxConnReceiveWindow       = upstream.DefaultQUICMaxConnReceiveWindow
	DefaultQUICMaxIncomingUniStreams      = upstream.DefaultQUICMaxIncomingUniStreams
	DefaultAltSvcBrokenBackoff            = upstream.DefaultAltSvcBrokenBackoff
)

// upstreamFor is the pool of id's own connections to route.
func (s *Server) upstreamFor(id *workload.Identity, route *Route) *upstream.Pool {
	return s.pools.Get(tlsconf.Workload{ID: id.ID(), PID: id.Process.PID, Selectors: id.Process.Selectors}, route)
}
