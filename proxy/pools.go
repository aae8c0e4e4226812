package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// UpstreamOptions tune upstream connections. Zero values take defaults.
type UpstreamOptions struct {
	// DialTimeout bounds TCP connect plus TLS handshake. Default 10s.
	DialTimeout time.Duration
	// IdleConnTimeout closes pooled connections idle this long. Default 90s.
	IdleConnTimeout time.Duration
	// MaxIdlePerPool bounds idle keep-alive connections per (identity,
	// route). Default 64.
	MaxIdlePerPool int
	// ResponseHeaderTimeout bounds the wait for response headers. Default 0:
	// none (long polls), bounded by the client instead.
	ResponseHeaderTimeout time.Duration
}

// poolKey is what separates upstream connections: one identity's
// connections and TLS sessions are never offered to another (I5, I6).
type poolKey struct {
	id    spiffeid.ID
	route string
}

// pool is the upstream side of one (identity, route): its TLS config, with
// its own session cache, and its own HTTP keep-alive pool.
type pool struct {
	route     Route
	tls       *tls.Config
	transport *http.Transport
	dialer    *net.Dialer
}

type pools struct {
	src  tlsconf.Source
	opts UpstreamOptions
	mu   sync.Mutex
	m    map[poolKey]*pool
}

func newPools(src tlsconf.Source, opts UpstreamOptions) *pools {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.IdleConnTimeout <= 0 {
		opts.IdleConnTimeout = 90 * time.Second
	}
	if opts.MaxIdlePerPool <= 0 {
		opts.MaxIdlePerPool = 64
	}
	return &pools{src: src, opts: opts, m: make(map[poolKey]*pool)}
}

// get returns the pool for (id, route), creating it, or replacing it when
// the route's definition changed under the same name.
func (ps *pools) get(id *workload.Identity, route *Route) *pool {
	key := poolKey{id: id.ID(), route: route.Name}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.m[key]; ok && p.route == *route {
		return p
	} else if ok {
		p.close()
	}
	w := tlsconf.Workload{ID: id.ID(), PID: id.Process.PID, Selectors: id.Process.Selectors}
	p := ps.newPool(w, route)
	ps.m[key] = p
	return p
}

func (ps *pools) newPool(w tlsconf.Workload, route *Route) *pool {
	svid := &svidSource{src: ps.src, w: w, timeout: ps.opts.DialTimeout}
	var next []string
	if route.Protocol == ProtocolHTTP1 {
		next = []string{"http/1.1"}
	}
	conf := tlsconf.ClientConfig(svid, ps.src.Bundles(), route.authorizer(), next...)
	conf.ServerName = route.Host
	d := &net.Dialer{Timeout: ps.opts.DialTimeout, KeepAlive: 30 * time.Second}
	upstream := route.Upstream
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", upstream)
		},
		TLSClientConfig:       conf,
		TLSHandshakeTimeout:   ps.opts.DialTimeout,
		MaxIdleConns:          ps.opts.MaxIdlePerPool,
		MaxIdleConnsPerHost:   ps.opts.MaxIdlePerPool,
		IdleConnTimeout:       ps.opts.IdleConnTimeout,
		ResponseHeaderTimeout: ps.opts.ResponseHeaderTimeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	return &pool{route: *route, tls: conf, transport: tr, dialer: d}
}

// dialTLS opens one mTLS connection for a tunnel or raw socket, sharing the
// pool's TLS session cache.
func (p *pool) dialTLS(ctx context.Context) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.dialer.Timeout)
	defer cancel()
	raw, err := p.dialer.DialContext(ctx, "tcp", p.route.Upstream)
	if err != nil {
		return nil, fmt.Errorf("dial upstream %s: %w", p.route.Upstream, err)
	}
	c := tls.Client(raw, p.tls)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with upstream %s: %w", p.route.Upstream, err)
	}
	return c, nil
}

func (p *pool) close() { p.transport.CloseIdleConnections() }

// retain closes the pools of routes that st no longer has.
func (ps *pools) retain(st *State) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		if r, ok := st.Route(k.route); !ok || *r != p.route {
			p.close()
			delete(ps.m, k)
		}
	}
}

// closeAll closes every pool's idle connections.
func (ps *pools) closeAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		p.close()
		delete(ps.m, k)
	}
}

// svidSource hands the TLS stack the workload's current SVID at every
// handshake, so a rotated SVID is used as soon as it exists.
type svidSource struct {
	src     tlsconf.Source
	w       tlsconf.Workload
	timeout time.Duration
}

func (s *svidSource) GetX509SVID() (*x509svid.SVID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.src.SVID(ctx, s.w)
}
