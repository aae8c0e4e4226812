package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// quicEndpoint is the one UDP socket a Pools' HTTP/3 pools dial from. It
// carries many QUIC connections, each with its own TLS handshake, keys and
// connection IDs; a QUIC connection, not the socket, belongs to an
// identity, so sharing the socket shares nothing between identities and
// saves a socket (and its 7 MiB of kernel buffer allowance) per pool.
type quicEndpoint struct {
	mu sync.Mutex
	tr *quic.Transport
}

// transport returns the socket's QUIC transport, opening the socket on
// first use.
func (q *quicEndpoint) transport() (*quic.Transport, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.tr != nil {
		return q.tr, nil
	}
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("open UDP socket for HTTP/3: %w", err)
	}
	// 8-byte connection IDs: many connections share the socket.
	q.tr = &quic.Transport{Conn: c, ConnectionIDLength: 8}
	return q.tr, nil
}

// close closes every QUIC connection dialled from the socket, and the
// socket.
func (q *quicEndpoint) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.tr == nil {
		return
	}
	q.tr.Close()
	q.tr.Conn.Close()
	q.tr = nil
}

// h3DialError is a failure to reach the upstream over QUIC: no request was
// sent. An auto route falls back to TCP on it.
type h3DialError struct {
	addr string
	err  error
}

func (e *h3DialError) Error() string {
	return fmt.Sprintf("HTTP/3 (QUIC) handshake with upstream %s: %v", e.addr, e.err)
}

func (e *h3DialError) Unwrap() error { return e.err }

// h3Transport is the HTTP/3 side of one pool: an http3.Transport whose
// every QUIC connection goes to the pool's target address (the route's
// Upstream, or the port an auto route learned from Alt-Svc) with the
// pool's TLS config (ALPN h3, the identity's own SVID and session cache).
//
// Closing is by generation: retire hands the current http3.Transport over
// to be closed once the requests using it (until their response bodies end)
// are done, and the next request starts a new one. So a reload that drops
// the pool never cuts a response short, and a dropped pool never keeps a
// QUIC connection open.
type h3Transport struct {
	udp         *quicEndpoint
	tls         *tls.Config
	quic        *quic.Config
	maxHeader   int
	dialTimeout time.Duration
	headerWait  time.Duration // ResponseHeaderTimeout; 0: none
	dials       *atomic.Uint64

	mu       sync.Mutex
	target   string
	cur      *h3Gen
	retired  bool
	prepared *quic.Conn // dialled ahead by an auto route's probe
}

type h3Gen struct {
	rt       *http3.Transport
	inflight int
	retired  bool
}

func newH3Transport(ps *Pools, p *Pool, route *Route, conf *tls.Config) *h3Transport {
	o := ps.opts
	return &h3Transport{
		dials:       p.dials,
		udp:         ps.udp,
		tls:         conf,
		quic:        quicConfig(o),
		maxHeader:   o.MaxResponseHeaderBytes,
		dialTimeout: o.DialTimeout,
		headerWait:  o.ResponseHeaderTimeout,
		target:      route.Upstream,
	}
}

// quicConfig bounds what an upstream can make procmesh hold (THREATS P6):
// no bidirectional streams from the server, a few unidirectional ones,
// bounded flow-control windows, handshake and idle timeouts.
func quicConfig(o Options) *quic.Config {
	maxStream := uint64(o.QUICMaxStreamReceiveWindow)
	maxConn := uint64(o.QUICMaxConnectionReceiveWindow)
	return &quic.Config{
		HandshakeIdleTimeout:           o.DialTimeout,
		MaxIdleTimeout:                 o.QUICMaxIdleTimeout,
		KeepAlivePeriod:                o.QUICKeepAlivePeriod,
		InitialStreamReceiveWindow:     min(512<<10, maxStream),
		MaxStreamReceiveWindow:         maxStream,
		InitialConnectionReceiveWindow: min(768<<10, maxConn),
		MaxConnectionReceiveWindow:     maxConn,
		MaxIncomingStreams:             -1,
		MaxIncomingUniStreams:          int64(o.QUICMaxIncomingUniStreams),
	}
}

// RoundTrip sends req over HTTP/3 to the pool's target. An idempotent
// request without a body that fails because its QUIC connection went away
// (closed by the upstream, idle timeout, stateless reset) is sent once more
// on a new connection, as net/http does on a dead keep-alive connection.
func (t *h3Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	if err != nil && connLost(err) && replayable(req) && req.Context().Err() == nil {
		resp, err = t.roundTrip(req)
	}
	return resp, err
}

// connLost reports an error that says the request's QUIC connection is
// gone, not that the request failed on it.
func connLost(err error) bool {
	var ae *quic.ApplicationError
	var te *quic.TransportError
	var ie *quic.IdleTimeoutError
	var sr *quic.StatelessResetError
	return errors.As(err, &ae) && ae.Remote || errors.As(err, &te) && te.Remote ||
		errors.As(err, &ie) || errors.As(err, &sr)
}

// replayable reports a request that may be sent twice.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

func (t *h3Transport) roundTrip(req *http.Request) (*http.Response, error) {
	// http3.Transport has no ResponseHeaderTimeout: cancel the request if
	// its headers are late.
	var timer *time.Timer
	var cancel context.CancelCauseFunc
	if t.headerWait > 0 {
		var ctx context.Context
		ctx, cancel = context.WithCancelCause(req.Context())
		timer = time.AfterFunc(t.headerWait, func() { cancel(errResponseHeaderTimeout) })
		req = req.WithContext(ctx)
	}
	g := t.acquire()
	resp, err := g.rt.RoundTrip(req)
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		t.release(g)
		if cancel != nil {
			if cause := context.Cause(req.Context()); errors.Is(cause, errResponseHeaderTimeout) {
				err = cause
			}
			cancel(nil)
		}
		if strings.Contains(err.Error(), "http3: headers too large") { // quic-go keeps it unexported
			err = &HeaderLimitError{Limit: t.maxHeader, err: err}
		}
		return nil, err
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() {
		if cancel != nil {
			cancel(nil)
		}
		t.release(g)
	}}
	return resp, nil
}

var errResponseHeaderTimeout = errors.New("timeout awaiting response headers")

func (t *h3Transport) acquire() *h3Gen {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.cur
	if g == nil {
		g = &h3Gen{rt: &http3.Transport{
			TLSClientConfig:        t.tls,
			QUICConfig:             t.quic,
			Dial:                   t.dial,
			MaxResponseHeaderBytes: t.maxHeader,
			DisableCompression:     true,
		}}
		if t.retired {
			// A request that got the pool just before it was dropped:
			// its connection closes when it is done.
			g.retired = true
		} else {
			t.cur = g
		}
	}
	g.inflight++
	return g
}

func (t *h3Transport) release(g *h3Gen) {
	t.mu.Lock()
	g.inflight--
	done := g.inflight == 0 && g.retired
	t.mu.Unlock()
	if done {
		g.rt.Close()
	}
}

// retire closes the current connections once their requests are done.
func (t *h3Transport) retire() {
	t.mu.Lock()
	t.retired = true
	t.mu.Unlock()
	t.rotate()
}

// rotate starts a new generation for later requests and retires the
// current one: used when the target changes or an auto route gives up on
// HTTP/3.
func (t *h3Transport) rotate() {
	t.mu.Lock()
	g, prep := t.cur, t.prepared
	t.cur, t.prepared = nil, nil
	done := false
	if g != nil {
		g.retired = true
		done = g.inflight == 0
	}
	t.mu.Unlock()
	if prep != nil {
		prep.CloseWithError(0, "")
	}
	if done {
		g.rt.Close()
	}
}

// closeNow closes every connection, busy or not.
func (t *h3Transport) closeNow() {
	t.mu.Lock()
	t.retired = true
	g, prep := t.cur, t.prepared
	t.cur, t.prepared = nil, nil
	t.mu.Unlock()
	if prep != nil {
		prep.CloseWithError(0, "")
	}
	if g != nil {
		g.rt.Close()
	}
}

// setTarget points later connections at addr, retiring the current ones
// if they go elsewhere.
func (t *h3Transport) setTarget(addr string) {
	t.mu.Lock()
	changed := t.target != addr
	t.target = addr
	t.mu.Unlock()
	if changed {
		t.rotate()
	}
}

// prepare hands the transport a connection dialled ahead of time to target;
// the next dial uses it.
func (t *h3Transport) prepare(target string, c *quic.Conn) {
	t.mu.Lock()
	old := t.prepared
	if t.retired || t.target != target {
		old, c = c, nil
	}
	t.prepared = c
	t.mu.Unlock()
	if old != nil {
		old.CloseWithError(0, "")
	}
}

// dial is the http3.Transport's Dial: whatever host the request names, it
// goes to the pool's target.
func (t *h3Transport) dial(ctx context.Context, _ string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
	t.mu.Lock()
	target, prep := t.target, t.prepared
	t.prepared = nil
	t.mu.Unlock()
	if prep != nil {
		if prep.Context().Err() == nil {
			return prep, nil
		}
	}
	return t.dialQUIC(ctx, target, tlsConf, conf)
}

// dialQUIC completes a QUIC handshake with addr (no 0-RTT: a request is
// sent only once the upstream proved its identity and the handshake is
// confirmed).
func (t *h3Transport) dialQUIC(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
	if tlsConf == nil {
		tlsConf = t.tls.Clone()
		tlsConf.NextProtos = []string{http3.NextProtoH3}
	}
	if conf == nil {
		conf = t.quic
	}
	t.dials.Add(1)
	ctx, cancel := context.WithTimeout(ctx, t.dialTimeout)
	defer cancel()
	ua, err := resolveUDP(ctx, addr)
	if err != nil {
		return nil, &h3DialError{addr: addr, err: err}
	}
	tr, err := t.udp.transport()
	if err != nil {
		return nil, &h3DialError{addr: addr, err: err}
	}
	c, err := tr.Dial(ctx, ua, tlsConf, conf)
	if err != nil {
		return nil, &h3DialError{addr: addr, err: err}
	}
	return c, nil
}

// resolveUDP resolves host:port for UDP.
func resolveUDP(ctx context.Context, hostport string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(p))), nil
}

// releaseBody calls release once, when the body ends or is closed.
type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// heldBody lets a request be retried on another transport when the first
// one failed before reading its body: Close does not reach the real body
// until a read has started, so a transport that closes the body on a dial
// error leaves it usable.
type heldBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *heldBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *heldBody) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}

// isDialError reports whether err is a failure to reach the upstream over
// QUIC.
func isDialError(err error) bool {
	var de *h3DialError
	return errors.As(err, &de)
}
