package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/internal/rawio"
	"github.com/procmesh/procmesh/proxy/internal/defaults"
	"github.com/procmesh/procmesh/tlsconf"
)

// Options tune upstream connections. Zero values take defaults.
//
// HTTP/3 runs over UDP. quic-go asks the kernel for 7 MiB socket buffers
// (SO_RCVBUF/SO_SNDBUF); the kernel caps them at net.core.rmem_max and
// net.core.wmem_max unless the process has CAP_NET_ADMIN, in which case
// quic-go forces them. Raise both to at least 7.5 MB for HTTP/3 routes:
//
//	sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000
//
// When that is not possible, HTTP/3 still works, but bursts beyond the
// smaller buffer are dropped by the kernel and recovered by QUIC's loss
// recovery (lower throughput, more retransmits), and quic-go prints one
// warning ("failed to sufficiently increase receive buffer size") on the
// process's standard error through the standard library logger, outside
// procmesh's own log; QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true silences
// it. A Pools opens one UDP socket, shared by all its HTTP/3 pools (QUIC
// connections, not sockets, carry identities), so the buffers are needed
// once, not per identity.
type Options struct {
	// DialTimeout bounds TCP connect plus TLS handshake, and the QUIC
	// handshake of HTTP/3 routes. Default 10s.
	DialTimeout time.Duration
	// IdleConnTimeout closes pooled TCP connections (HTTP/1.1 and HTTP/2)
	// idle this long. Default 90s.
	IdleConnTimeout time.Duration
	// MaxIdlePerPool bounds idle HTTP/1.1 keep-alive connections per
	// (identity, route). Default 64.
	MaxIdlePerPool int
	// ResponseHeaderTimeout bounds the wait for response headers. Default 0:
	// none (long polls, gRPC streams), bounded by the client instead.
	ResponseHeaderTimeout time.Duration
	// MaxResponseHeaderBytes bounds the response headers procmesh accepts
	// from an upstream, in every HTTP protocol: the HTTP/1.1 header
	// section, HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE (which also ends a
	// CONTINUATION flood: the connection is closed once a header block
	// outgrows it, THREATS P5), and the HTTP/3 HEADERS frame (P6). A
	// response over the limit fails with 502. Default 60 KiB, as Envoy.
	MaxResponseHeaderBytes int

	// PreconnectTTL is how long a preconnection waits for an identity
	// before it is closed (preconnect.go). Default 10s, well under the
	// handshake timeouts of common servers (nginx 60 s, Envoy 15 s), so
	// that procmesh ends it, not the upstream.
	PreconnectTTL time.Duration
	// H2ReadIdleTimeout sends an HTTP/2 PING on a connection that has
	// received no frame for this long, to find dead connections. Default
	// 30s; negative turns health checks off.
	H2ReadIdleTimeout time.Duration
	// H2PingTimeout closes an HTTP/2 connection whose PING is not answered
	// this long. Default 15s.
	H2PingTimeout time.Duration

	// QUICMaxIdleTimeout closes a QUIC connection that has received no
	// packet for this long: it ends idle connections and finds dead ones.
	// Default 30s.
	QUICMaxIdleTimeout time.Duration
	// QUICKeepAlivePeriod sends a PING on an idle QUIC connection this
	// often, keeping it open while its pool exists. Default 0: off, idle
	// connections close after QUICMaxIdleTimeout.
	QUICKeepAlivePeriod time.Duration
	// QUICMaxStreamReceiveWindow bounds what one HTTP/3 response may have
	// in flight unread (flow control per stream). Default 4 MiB.
	QUICMaxStreamReceiveWindow int
	// QUICMaxConnectionReceiveWindow bounds the same per QUIC connection.
	// Default 16 MiB.
	QUICMaxConnectionReceiveWindow int
	// QUICMaxIncomingUniStreams bounds the unidirectional streams an
	// upstream may open (HTTP/3 needs three: control, QPACK encoder and
	// decoder); it may open no bidirectional ones. Default 16.
	QUICMaxIncomingUniStreams int
	// TLSCurves are the key exchanges offered in every upstream TLS
	// handshake: HTTP/1.1, HTTP/2, HTTP/3, tunnels and raw sockets
	// (tls.Config.CurvePreferences; crypto/tls ignores the order). Default
	// nil: Go's list, post-quantum hybrids first, which costs an ML-KEM key
	// share on every full handshake. Not modified.
	TLSCurves []tls.CurveID
	// TLSMaxRecords sends full-size (16 KiB) TLS records from a
	// connection's first byte (tls.Config.DynamicRecordSizingDisabled).
	// Default false: Go's dynamic sizing, which starts each connection
	// with records of one TCP segment and grows them after about 1 MB.
	TLSMaxRecords bool
	// AltSvcBrokenBackoff is how long an auto route stays on TCP after an
	// HTTP/3 dial or handshake to the upstream's advertised alternative
	// failed. Default 5m.
	AltSvcBrokenBackoff time.Duration
}

// Defaults of Options.
const (
	DefaultDialTimeout                = 10 * time.Second
	DefaultIdleConnTimeout            = 90 * time.Second
	DefaultPreconnectTTL              = 10 * time.Second
	DefaultMaxIdlePerPool             = 64
	DefaultMaxResponseHeaderBytes     = 60 << 10
	DefaultH2ReadIdleTimeout          = 30 * time.Second
	DefaultH2PingTimeout              = 15 * time.Second
	DefaultQUICMaxIdleTimeout         = 30 * time.Second
	DefaultQUICMaxStreamReceiveWindow = 4 << 20
	DefaultQUICMaxConnReceiveWindow   = 16 << 20
	DefaultQUICMaxIncomingUniStreams  = 16
	DefaultAltSvcBrokenBackoff        = 5 * time.Minute
)

func (o Options) withDefaults() Options {
	o.DialTimeout = defaults.PositiveOr(o.DialTimeout, DefaultDialTimeout)
	o.IdleConnTimeout = defaults.PositiveOr(o.IdleConnTimeout, DefaultIdleConnTimeout)
	o.MaxIdlePerPool = defaults.PositiveOr(o.MaxIdlePerPool, DefaultMaxIdlePerPool)
	o.MaxResponseHeaderBytes = defaults.PositiveOr(o.MaxResponseHeaderBytes, DefaultMaxResponseHeaderBytes)
	o.H2ReadIdleTimeout = defaults.OffIfNegative(defaults.Or(o.H2ReadIdleTimeout, DefaultH2ReadIdleTimeout))
	o.H2PingTimeout = defaults.PositiveOr(o.H2PingTimeout, DefaultH2PingTimeout)
	o.QUICMaxIdleTimeout = defaults.PositiveOr(o.QUICMaxIdleTimeout, DefaultQUICMaxIdleTimeout)
	o.QUICMaxStreamReceiveWindow = defaults.PositiveOr(o.QUICMaxStreamReceiveWindow, DefaultQUICMaxStreamReceiveWindow)
	o.QUICMaxConnectionReceiveWindow = defaults.PositiveOr(o.QUICMaxConnectionReceiveWindow, DefaultQUICMaxConnReceiveWindow)
	o.QUICMaxIncomingUniStreams = defaults.PositiveOr(o.QUICMaxIncomingUniStreams, DefaultQUICMaxIncomingUniStreams)
	o.AltSvcBrokenBackoff = defaults.PositiveOr(o.AltSvcBrokenBackoff, DefaultAltSvcBrokenBackoff)
	o.PreconnectTTL = defaults.PositiveOr(o.PreconnectTTL, DefaultPreconnectTTL)
	return o
}

// poolKey is what separates upstream connections: one identity's
// connections and TLS sessions are never offered to another (I5, I6).
type poolKey struct {
	id    spiffeid.ID
	route string
}

// Pool is the upstream side of one (identity, route): its TLS configs, each
// with the identity's own session cache, and its own connections. transport
// forwards HTTP requests with the route's protocol; tunnels and raw sockets
// dial TCP+TLS with DialTLS.
type Pool struct {
	route     Route
	tls       *tls.Config // tunnels: the route's TunnelALPN
	transport http.RoundTripper
	tcp       *http.Transport // HTTP/1.1 and HTTP/2; nil for http3
	h3        *h3Transport    // http3 and auto; nil otherwise
	auto      *autoTransport  // auto; nil otherwise
	h1        *H1Pool         // http1: the fast path's connections; nil otherwise
	dialer    *net.Dialer
	dials     *atomic.Uint64 // the route's dial counter (Pools.Dials)
	svid      *svidSource
	pre       *preconnector // the route's preconnections; nil without
}

// Pools holds the upstream connections of every (identity, route).
type Pools struct {
	src  tlsconf.Source
	opts Options
	log  zerolog.Logger
	udp  *quicEndpoint
	mu   sync.Mutex
	m    map[poolKey]*Pool
	// dials counts the upstream connections dialled per route name, TCP
	// and QUIC, for all identities; it outlives the route's pools.
	dials map[string]*atomic.Uint64
	// pre holds the preconnector of each route with Preconnect, shared by
	// the route's pools (a preconnection has no identity until taken).
	pre map[string]*preconnector
	// preCounts counts each route's preconnections; it outlives them.
	preCounts map[string]*PreconnectCounts
}

// NewPools makes the pools of all identities; log receives pool events:
// an auto route moving to HTTP/3 or back to TCP.
func NewPools(src tlsconf.Source, opts Options, log zerolog.Logger) *Pools {
	return &Pools{src: src, opts: opts.withDefaults(), log: log, udp: &quicEndpoint{}, m: make(map[poolKey]*Pool),
		dials: make(map[string]*atomic.Uint64), pre: make(map[string]*preconnector),
		preCounts: make(map[string]*PreconnectCounts)}
}

// Get returns the pool of w's identity for route, creating it, or
// replacing it when the route's definition changed under the same name.
// The pool is w's own: its connections and TLS sessions never serve
// another identity (I5, I6). The PID and selectors of w go to the Source
// when the pool needs an SVID.
func (ps *Pools) Get(w tlsconf.Workload, route *Route) *Pool {
	key := poolKey{id: w.ID, route: route.Name}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.m[key]; ok && p.route == *route {
		return p
	} else if ok {
		p.close()
	}
	p := ps.newPool(w, route)
	ps.m[key] = p
	return p
}

func (ps *Pools) newPool(w tlsconf.Workload, route *Route) *Pool {
	svid := &svidSource{src: ps.src, w: w, timeout: ps.opts.DialTimeout}
	d := &net.Dialer{Timeout: ps.opts.DialTimeout, KeepAlive: 30 * time.Second}
	dials := ps.dials[route.Name]
	if dials == nil {
		dials = new(atomic.Uint64)
		ps.dials[route.Name] = dials
	}
	p := &Pool{route: *route, dialer: d, dials: dials, svid: svid}
	newTLS := func(next ...string) *tls.Config {
		conf := tlsconf.ClientConfig(svid, ps.src.Bundles(), route.Authorizer(), next...)
		conf.ServerName = route.Host
		conf.CurvePreferences = ps.opts.TLSCurves
		conf.DynamicRecordSizingDisabled = ps.opts.TLSMaxRecords
		return conf
	}
	log := ps.log.With().Str("route", route.Name).Str("upstream", route.Upstream).Str("spiffe_id", w.ID.String()).Logger()
	switch route.Protocol {
	case ProtocolHTTP2:
		conf := newTLS("h2")
		p.tls = conf
		p.tcp = ps.newTCPTransport(p, conf, true)
		p.transport = tcpErrors{p.tcp, ps.opts.MaxResponseHeaderBytes}
	case ProtocolHTTP3:
		// Tunnels still go over TCP; they get their own session cache.
		p.tls = newTLS(route.TunnelALPN()...)
		p.h3 = newH3Transport(ps, p, route, newTLS("h3"))
		p.transport = p.h3
	case ProtocolAuto:
		conf := newTLS("h2", "http/1.1")
		// Same identity, same session cache, different ALPN.
		p.tls = conf.Clone()
		p.tls.NextProtos = route.TunnelALPN()
		p.tcp = ps.newTCPTransport(p, conf, false)
		p.h3 = newH3Transport(ps, p, route, newTLS("h3"))
		p.auto = newAutoTransport(route, tcpErrors{p.tcp, ps.opts.MaxResponseHeaderBytes}, p.h3, ps.opts.AltSvcBrokenBackoff, log)
		p.transport = p.auto
	default: // http1; tcp routes have no HTTP transport but share the shape
		p.tls = newTLS(route.TunnelALPN()...)
		p.tcp = ps.newTCPTransport(p, p.tls, false)
		p.transport = tcpErrors{p.tcp, ps.opts.MaxResponseHeaderBytes}
		if route.Protocol == ProtocolHTTP1 {
			p.h1 = newH1Pool(p, ps.opts)
			p.pre = ps.preconnector(route, p.tls, d, dials)
		}
	}
	return p
}

// preconnector returns route's preconnector, making it (or replacing it
// when the route's definition changed), or nil when the route has none.
// ps.mu is held.
func (ps *Pools) preconnector(route *Route, conf *tls.Config, d *net.Dialer, dials *atomic.Uint64) *preconnector {
	pc := ps.pre[route.Name]
	if pc != nil && pc.route == *route {
		return pc
	}
	if pc != nil {
		pc.close()
		delete(ps.pre, route.Name)
	}
	if route.Preconnect <= 0 {
		return nil
	}
	counts := ps.preCounts[route.Name]
	if counts == nil {
		counts = new(PreconnectCounts)
		ps.preCounts[route.Name] = counts
	}
	pc = newPreconnector(*route, conf, d, dials, counts, ps.opts.PreconnectTTL)
	ps.pre[route.Name] = pc
	return pc
}

// Transport forwards HTTP requests with the route's protocol.
func (p *Pool) Transport() http.RoundTripper { return p.transport }

// Host is the route's host, the Host of the pool's requests.
func (p *Pool) Host() string { return p.route.Host }

// H1 is the fast path's connection pool of an http1 route; nil for the
// other protocols, whose requests go through Transport.
func (p *Pool) H1() *H1Pool { return p.h1 }

// DialTLS opens one mTLS connection of the fast path's HTTP/1.1 pool,
// sharing the pool's TLS session cache: a preconnection of the route when
// one is ready (preconnect.go), else a new one; the H1Pool starts the
// route's next preconnection after the connection's first exchange. A
// preconnection that fails to finish (the upstream gave up waiting for
// the certificate) is replaced by a new connection, so the request does
// not fail for it.
func (p *Pool) DialTLS(ctx context.Context) (*tls.Conn, error) {
	if p.pre != nil {
		if h := p.pre.take(); h != nil {
			fctx, cancel := context.WithTimeout(ctx, p.dialer.Timeout)
			c, err := p.finish(fctx, h)
			cancel()
			if err == nil {
				return c, nil
			}
		}
	}
	return p.dialTLSWith(ctx, p.tls, nil)
}

// dialTCP counts a dial (dials) and connects to addr. The connection
// reads and writes with raw system calls (package rawio), as every
// upstream TCP connection does.
func dialTCP(ctx context.Context, d *net.Dialer, dials *atomic.Uint64, addr string) (net.Conn, error) {
	dials.Add(1)
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}

// dialTLSWith dials TCP, wraps the connection with wrap when given (the
// layer crypto/tls writes to), and completes a TLS handshake with conf.
func (p *Pool) dialTLSWith(ctx context.Context, conf *tls.Config, wrap func(net.Conn) net.Conn) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.dialer.Timeout)
	defer cancel()
	raw, err := dialTCP(ctx, p.dialer, p.dials, p.route.Upstream)
	if err != nil {
		return nil, fmt.Errorf("dial upstream %s: %w", p.route.Upstream, err)
	}
	under := raw
	if wrap != nil {
		under = wrap(under)
	}
	c := tls.Client(under, conf)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with upstream %s: %w", p.route.Upstream, err)
	}
	return c, nil
}

// close retires the pool: idle connections close now, busy ones once their
// last request ends (HTTP/3) or when they go idle (TCP).
func (p *Pool) close() {
	if p.h1 != nil {
		p.h1.close()
	}
	if p.auto != nil {
		p.auto.stop()
	}
	if p.tcp != nil {
		p.tcp.CloseIdleConnections()
	}
	if p.h3 != nil {
		p.h3.retire()
	}
}

// closeNow closes every connection of the pool, busy or not.
func (p *Pool) closeNow() {
	if p.h1 != nil {
		p.h1.closeNow()
	}
	if p.auto != nil {
		p.auto.stop()
	}
	if p.tcp != nil {
		p.tcp.CloseIdleConnections()
	}
	if p.h3 != nil {
		p.h3.closeNow()
	}
}

// Retain closes the pools that keep refuses: the caller's test sees the
// identity and the route as the pool was built for it (a reload compares
// it with its own route of that name).
func (ps *Pools) Retain(keep func(id spiffeid.ID, route *Route) bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		if !keep(k.id, &p.route) {
			p.close()
			delete(ps.m, k)
		}
	}
	// A preconnector lives while a pool of its route does.
	for name, pc := range ps.pre {
		used := false
		for _, p := range ps.m {
			used = used || p.pre == pc
		}
		if !used {
			pc.close()
			delete(ps.pre, name)
		}
	}
}

// Each calls fn with the identity and route of every open pool, and the
// HTTP/1.1 connections it holds (open, and idle among them; 0 for the
// other protocols, whose connections net/http and quic-go keep), under
// the pools' lock (fn must not call back into ps).
func (ps *Pools) Each(fn func(id spiffeid.ID, route *Route, open, idle int)) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		open, idle := 0, 0
		if p.h1 != nil {
			open, idle = p.h1.counts()
		}
		fn(k.id, &p.route, open, idle)
	}
}

// Dials returns how many upstream connections were dialled (TCP and
// QUIC, successful or not) per route name, since ps was made.
func (ps *Pools) Dials() map[string]uint64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make(map[string]uint64, len(ps.dials))
	for r, n := range ps.dials {
		out[r] = n.Load()
	}
	return out
}

// Preconnects returns each route's preconnection counts (routes that
// ever had preconnections), since ps was made.
func (ps *Pools) Preconnects() map[string]PreconnectStats {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make(map[string]PreconnectStats, len(ps.preCounts))
	for r, c := range ps.preCounts {
		st := PreconnectStats{Used: c.Used.Load(), Expired: c.Expired.Load(), Failed: c.Failed.Load()}
		if pc := ps.pre[r]; pc != nil {
			pc.mu.Lock()
			st.Ready = len(pc.ready)
			pc.mu.Unlock()
		}
		out[r] = st
	}
	return out
}

// PreconnectStats is a snapshot of PreconnectCounts, and how many
// preconnections are ready now.
type PreconnectStats struct {
	Used, Expired, Failed uint64
	Ready                 int
}

// CloseAll closes every pool and the HTTP/3 socket.
func (ps *Pools) CloseAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, p := range ps.m {
		p.closeNow()
		delete(ps.m, k)
	}
	for name, pc := range ps.pre {
		pc.close()
		delete(ps.pre, name)
	}
	ps.udp.close()
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
