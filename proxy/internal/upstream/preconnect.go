package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Preconnection: a TLS 1.3 client sends its certificate in its second
// flight, after the server's whole first flight. Until then nothing it
// sends or receives depends on who the client is: the ClientHello offers
// no session (there is none for an identity not yet seen), and the
// server's certificate is checked against the route, not the caller. A
// preconnector keeps Route.Preconnect such handshakes under way to its
// route, each stopped in GetClientCertificate, so that the first
// connection of a new identity (a process never seen before, its SVID
// just minted) costs the client's second flight instead of a TCP
// connect, a round trip and the server's key exchange.
//
// A preconnection is one connection's beginning and serves one identity:
// the first pool that takes it gives it that identity's SVID and session
// cache, and it becomes that pool's connection like any other. Before
// that it has no identity, no session, and carries no request (I5, I6).
//
// Waste is bounded: a preconnection not taken within Options.PreconnectTTL is
// closed and not replaced; one is started again only when the route next
// has to dial (a cold dial, or a preconnection taken), and then after that
// connection's first exchange (Conn.refilled), so that the replacement's
// handshake does not take CPU from the one a client is waiting for. A
// route that never sees a new identity never has more than its first one.

var errAbandoned = errors.New("preconnection abandoned")

// preconnector keeps one route's preconnections.
type preconnector struct {
	route  Route
	n      int
	conf   *tls.Config // the route's client config without SVID or sessions
	dialer *net.Dialer
	dials  *atomic.Uint64
	ttl    time.Duration

	mu      sync.Mutex
	ready   []*preconn // stopped at the client certificate, oldest first
	pending int        // dialling or handshaking
	closed  bool

	counts *PreconnectCounts // the route's; outlives the preconnector
}

// PreconnectCounts counts a route's preconnections by how they ended.
type PreconnectCounts struct {
	// Used were taken by an identity and completed its handshake.
	Used atomic.Uint64
	// Expired waited Options.PreconnectTTL for an identity and were closed.
	Expired atomic.Uint64
	// Failed ended before reaching the client certificate (dial or
	// handshake error, an upstream that asks for none), or after it was
	// taken (a handshake the upstream refused).
	Failed atomic.Uint64
}

// preconn is one handshake stopped at the client certificate.
type preconn struct {
	tc     *tls.Conn
	cert   chan *tls.Certificate // the taker's certificate
	cache  *takerCache
	done   chan error // the handshake's end
	cancel context.CancelFunc
	expire *time.Timer
}

func newPreconnector(route Route, conf *tls.Config, dialer *net.Dialer, dials *atomic.Uint64, counts *PreconnectCounts, ttl time.Duration) *preconnector {
	conf = conf.Clone()
	conf.GetClientCertificate = nil
	conf.ClientSessionCache = nil
	return &preconnector{route: route, n: route.Preconnect, conf: conf, dialer: dialer, dials: dials, counts: counts, ttl: ttl}
}

// fill starts handshakes until n are ready or under way.
func (pc *preconnector) fill() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for !pc.closed && len(pc.ready)+pc.pending < pc.n {
		pc.pending++
		go pc.run()
	}
}

// run dials one preconnection and leaves it ready, stopped at the client
// certificate, or drops it.
func (pc *preconnector) run() {
	h := &preconn{cert: make(chan *tls.Certificate, 1), cache: &takerCache{}, done: make(chan error, 1)}
	// The context ends the handshake at any stage: a failed dial, the
	// expiry, a retired route.
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	reached := make(chan struct{})
	conf := pc.conf.Clone()
	conf.ClientSessionCache = h.cache
	conf.GetClientCertificate = func(info *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		close(reached)
		select {
		case c := <-h.cert:
			return c, nil
		case <-info.Context().Done():
			return nil, errAbandoned
		}
	}
	ok := false
	defer func() {
		if !ok {
			pc.counts.Failed.Add(1)
			cancel()
			pc.mu.Lock()
			pc.pending--
			pc.mu.Unlock()
		}
	}()
	dctx, dcancel := context.WithTimeout(ctx, pc.dialer.Timeout)
	defer dcancel()
	raw, err := dialTCP(dctx, pc.dialer, pc.dials, pc.route.Upstream)
	if err != nil {
		return
	}
	h.tc = tls.Client(raw, conf)
	go func() { h.done <- h.tc.HandshakeContext(ctx) }()
	select {
	case <-reached:
	case <-h.done: // ended before a certificate was asked for: unusable
		raw.Close()
		return
	case <-dctx.Done():
		raw.Close()
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.pending--
	ok = true
	if pc.closed {
		h.abandon()
		return
	}
	pc.ready = append(pc.ready, h)
	h.expire = time.AfterFunc(pc.ttl, func() { pc.drop(h) })
}

// abandon ends h: its context (which stops its GetClientCertificate) and
// its connection, closed here because crypto/tls closes it only when the
// context ends before the handshake does, and the handshake ends as soon
// as the callback sees the context end.
func (h *preconn) abandon() {
	h.cancel()
	h.tc.Close()
}

// drop abandons a preconnection nobody took in time; it is not replaced.
func (pc *preconnector) drop(h *preconn) {
	pc.mu.Lock()
	for i, r := range pc.ready {
		if r == h {
			pc.ready = append(pc.ready[:i], pc.ready[i+1:]...)
			break
		}
	}
	pc.mu.Unlock()
	pc.counts.Expired.Add(1)
	h.abandon()
}

// take returns the newest ready preconnection, or nil. The replacement
// starts after the taken connection's first exchange (Conn.refilled).
func (pc *preconnector) take() *preconn {
	pc.mu.Lock()
	var h *preconn
	if n := len(pc.ready); n > 0 {
		h = pc.ready[n-1]
		pc.ready = pc.ready[:n-1]
	}
	pc.mu.Unlock()
	if h != nil && !h.expire.Stop() {
		h = nil // expiring right now
	}
	return h
}

// close abandons every preconnection; none is started again.
func (pc *preconnector) close() {
	pc.mu.Lock()
	pc.closed = true
	ready := pc.ready
	pc.ready = nil
	pc.mu.Unlock()
	for _, h := range ready {
		h.expire.Stop()
		h.abandon()
	}
}

// finish completes h for the pool's identity: its SVID in the
// certificate, its session cache for the tickets the server sends.
func (p *Pool) finish(ctx context.Context, h *preconn) (*tls.Conn, error) {
	cert, err := tlsconfig.GetClientCertificate(p.svid)(&tls.CertificateRequestInfo{})
	if err != nil {
		p.pre.counts.Failed.Add(1)
		h.abandon()
		return nil, fmt.Errorf("TLS handshake with upstream %s: %w", p.route.Upstream, err)
	}
	h.cache.give(p.tls.ClientSessionCache)
	h.cert <- cert
	select {
	case err = <-h.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		p.pre.counts.Failed.Add(1)
		h.abandon()
		return nil, fmt.Errorf("TLS handshake with upstream %s: %w", p.route.Upstream, err)
	}
	h.cancel() // after the handshake, this only releases the context
	p.pre.counts.Used.Add(1)
	return h.tc, nil
}

// takerCache is a preconnection's session cache: it offers no session (a
// preconnection belongs to nobody when it says hello), and passes the
// tickets that come after the handshake to the cache of the identity that
// took it.
type takerCache struct {
	mu sync.Mutex
	c  tls.ClientSessionCache
}

func (t *takerCache) give(c tls.ClientSessionCache) {
	t.mu.Lock()
	t.c = c
	t.mu.Unlock()
}

func (t *takerCache) Get(string) (*tls.ClientSessionState, bool) { return nil, false }

func (t *takerCache) Put(key string, cs *tls.ClientSessionState) {
	t.mu.Lock()
	c := t.c
	t.mu.Unlock()
	if c != nil {
		c.Put(key, cs)
	}
}
