package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/procmesh/procmesh/proxy/internal/defaults"
	"github.com/procmesh/procmesh/proxy/internal/framing"
)

// H1Pool holds the fast path's idle HTTP/1.1 connections to one route for
// one identity: a pool's connections carry that identity's SVID and TLS
// session cache (pool.tls), and no other identity ever gets them (I5, I6).
type H1Pool struct {
	p    *Pool
	host string // Host header of the requests, the route's host
	opts Options

	mu     sync.Mutex
	idle   []*Conn // most recently used last
	all    map[*Conn]struct{}
	closed bool
	sweep  *time.Timer
}

func newH1Pool(p *Pool, opts Options) *H1Pool {
	return &H1Pool{p: p, host: p.route.Host, opts: opts, all: make(map[*Conn]struct{})}
}

// Conn is one upstream connection of an H1Pool.
type Conn struct {
	pool *H1Pool
	tc   *tls.Conn
	raw  syscall.RawConn // of the TCP connection, for the liveness probe
	br   *bufio.Reader
	bw   *bufio.Writer

	// received counts bytes read since the request was written; limit
	// bounds what the response head may take (negative: none).
	received int64
	limit    int64
	limitMax int

	idleAt time.Time

	// refill is the route's preconnector, for a connection that was
	// dialed (a preconnection taken, or a new one): it starts the route's
	// next preconnection when this one's first exchange ends.
	refill atomic.Pointer[preconnector]
}

// Get returns an idle connection, or dials one. With probe, an idle
// connection is first checked for a close by the upstream (one syscall):
// for requests that cannot be sent again. A request that can is retried
// on a new connection instead (the caller's retry).
func (hp *H1Pool) Get(probe bool) (up *Conn, reused bool, err error) {
	now := time.Now()
	for {
		hp.mu.Lock()
		if len(hp.idle) == 0 {
			hp.mu.Unlock()
			break
		}
		up = hp.idle[len(hp.idle)-1]
		hp.idle = hp.idle[:len(hp.idle)-1]
		hp.mu.Unlock()
		if now.Sub(up.idleAt) < hp.opts.IdleConnTimeout && up.br.Buffered() == 0 && (!probe || up.alive()) {
			return up, true, nil
		}
		up.Close()
	}
	tc, err := hp.p.DialTLS(context.Background())
	if err != nil {
		return nil, false, err
	}
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != "" && proto != "http/1.1" {
		tc.Close()
		return nil, false, fmt.Errorf("upstream %s negotiated ALPN %q for an http1 route", hp.p.route.Upstream, proto)
	}
	up = &Conn{pool: hp, tc: tc, limit: -1}
	up.refill.Store(hp.p.pre)
	if sc, ok := tc.NetConn().(syscall.Conn); ok {
		up.raw, _ = sc.SyscallConn()
	}
	up.br = bufio.NewReaderSize(upReader{up}, upBufSize)
	up.bw = bufio.NewWriterSize(tc, upBufSize)
	hp.mu.Lock()
	if hp.closed {
		hp.mu.Unlock()
		tc.Close()
		return nil, false, fmt.Errorf("upstream pool for route %q was retired by a reload", hp.p.route.Name)
	}
	hp.all[up] = struct{}{}
	hp.mu.Unlock()
	return up, false, nil
}

// counts returns the pool's open connections and how many of them are idle.
func (hp *H1Pool) counts() (open, idle int) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return len(hp.all), len(hp.idle)
}

// Host is the Host of the pool's requests: the route's host.
func (hp *H1Pool) Host() string { return hp.host }

// StartRequest readies the connection for a new request and returns the
// buffered writer the request goes to (flushed by the caller).
func (up *Conn) StartRequest() *bufio.Writer {
	up.received = 0
	return up.bw
}

// Received reports how many bytes came back since StartRequest: a reused
// connection that failed before any did may be retried.
func (up *Conn) Received() int64 { return up.received }

// SetDeadline sets the connection's read and write deadlines.
func (up *Conn) SetDeadline(t time.Time) error { return up.tc.SetDeadline(t) }

// upBufSize is the read and write buffer of an upstream connection.
const upBufSize = 4 << 10

// Put returns a connection after a complete exchange.
func (hp *H1Pool) Put(up *Conn) {
	up.refilled()
	hp.mu.Lock()
	if hp.closed || len(hp.idle) >= hp.opts.MaxIdlePerPool {
		hp.mu.Unlock()
		up.Close()
		return
	}
	up.idleAt = time.Now()
	hp.idle = append(hp.idle, up)
	if hp.sweep == nil {
		hp.sweep = time.AfterFunc(hp.opts.IdleConnTimeout, hp.sweepIdle)
	}
	hp.mu.Unlock()
}

// sweepIdle closes connections idle for IdleConnTimeout, and comes back
// when the oldest one left will be.
func (hp *H1Pool) sweepIdle() {
	hp.mu.Lock()
	now := time.Now()
	var expired []*Conn
	keep := hp.idle[:0]
	for _, up := range hp.idle {
		if now.Sub(up.idleAt) >= hp.opts.IdleConnTimeout {
			expired = append(expired, up)
		} else {
			keep = append(keep, up)
		}
	}
	clear(hp.idle[len(keep):])
	hp.idle = keep
	if len(hp.idle) > 0 && !hp.closed {
		hp.sweep.Reset(hp.opts.IdleConnTimeout - now.Sub(hp.idle[0].idleAt))
	} else {
		hp.sweep = nil
	}
	hp.mu.Unlock()
	for _, up := range expired {
		up.Close()
	}
}

// close retires the pool: idle connections close now, busy ones when
// their exchange ends.
func (hp *H1Pool) close() {
	hp.mu.Lock()
	hp.closed = true
	idle := hp.idle
	hp.idle = nil
	if hp.sweep != nil {
		hp.sweep.Stop()
	}
	hp.mu.Unlock()
	for _, up := range idle {
		up.Close()
	}
}

// closeNow closes every connection of the pool, busy or not.
func (hp *H1Pool) closeNow() {
	hp.close()
	hp.mu.Lock()
	all := make([]*Conn, 0, len(hp.all))
	for up := range hp.all {
		all = append(all, up)
	}
	hp.mu.Unlock()
	for _, up := range all {
		up.Close()
	}
}

// Close closes the connection and forgets it.
func (up *Conn) Close() {
	up.refilled()
	up.tc.Close()
	up.pool.mu.Lock()
	delete(up.pool.all, up)
	up.pool.mu.Unlock()
}

// alive probes an idle connection without reading it: an upstream that
// closed it (idle timeout, restart) left a FIN or a TLS alert behind,
// which a one-byte MSG_PEEK sees; EAGAIN means open and quiet.
func (up *Conn) alive() bool {
	if up.raw == nil {
		return true
	}
	open := false
	err := up.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		open = errno == syscall.EAGAIN
		return true
	})
	return err == nil && open
}

// ReadResponse reads a response head, within the response header limits
// and timeout of the pool's Options.
func (up *Conn) ReadResponse(r *http.Request) (*http.Response, error) {
	opts := up.pool.opts
	up.limitMax = opts.MaxResponseHeaderBytes
	up.limit = int64(opts.MaxResponseHeaderBytes)
	if t := opts.ResponseHeaderTimeout; defaults.On(t) {
		up.tc.SetReadDeadline(time.Now().Add(t))
	}
	res, err := up.readResponse(r)
	if defaults.On(opts.ResponseHeaderTimeout) {
		up.tc.SetReadDeadline(time.Time{})
	}
	limited := up.limit == 0
	up.limit = -1
	switch {
	case err != nil && limited:
		// The same words as net/http's own transport, so both paths read alike.
		return nil, &HeaderLimitError{Limit: up.limitMax, err: fmt.Errorf("server response headers exceeded %d bytes; aborted", up.limitMax)}
	case err != nil:
		return nil, fmt.Errorf("reading the response from upstream: %w", err)
	}
	return res, nil
}

// readResponse parses the response head with framing.ParseResponse when
// the first read brought all of it and it is in that strict form (the
// common case: one TLS record), else with http.ReadResponse, which reads
// on. Either reads within the head limit the caller set.
func (up *Conn) readResponse(r *http.Request) (*http.Response, error) {
	if _, err := up.br.Peek(1); err == nil {
		b, _ := up.br.Peek(up.br.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			if res, ok := framing.ParseResponse(b[:i+4], up.br, r); ok {
				up.br.Discard(i + 4)
				return res, nil
			}
		}
	}
	return http.ReadResponse(up.br, r)
}

// Reusable reports that the connection is at a message boundary and the
// upstream did not ask to close it.
func (up *Conn) Reusable(res *http.Response) bool {
	return !res.Close && up.br.Buffered() == 0
}

// upReader reads an upstream connection for its buffered reader, counting
// and bounding what a response head takes.
type upReader struct{ up *Conn }

func (r upReader) Read(p []byte) (int, error) {
	up := r.up
	if up.limit == 0 {
		return 0, errHeadLimit
	}
	if up.limit > 0 && int64(len(p)) > up.limit {
		p = p[:up.limit]
	}
	n, err := up.tc.Read(p)
	up.received += int64(n)
	if up.limit > 0 {
		up.limit -= int64(n)
	}
	return n, err
}

var errHeadLimit = errors.New("response head limit reached")

// refilled starts the route's next preconnection after the first exchange
// of a dialed connection (once; Put and Close call it). Not earlier: the
// new handshake would take the CPU of both ends while this connection's
// own handshake and first request, which a client waits for, are under
// way. The next new identity is the one it is for.
func (up *Conn) refilled() {
	// Put runs once per request: a plain load first, the locked swap only
	// on the one call that finds a preconnector.
	if up.refill.Load() == nil {
		return
	}
	if pc := up.refill.Swap(nil); pc != nil {
		pc.fill()
	}
}
