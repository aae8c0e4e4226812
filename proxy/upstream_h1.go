package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// h1Pool holds the fast path's idle HTTP/1.1 connections to one route for
// one identity: a pool's connections carry that identity's SVID and TLS
// session cache (pool.tls), and no other identity ever gets them (I5, I6).
type h1Pool struct {
	p    *pool
	host string // Host header of the requests, the route's host
	opts UpstreamOptions

	mu     sync.Mutex
	idle   []*upConn // most recently used last
	all    map[*upConn]struct{}
	closed bool
	sweep  *time.Timer
}

func newH1Pool(p *pool, opts UpstreamOptions) *h1Pool {
	return &h1Pool{p: p, host: p.route.Host, opts: opts, all: make(map[*upConn]struct{})}
}

// upConn is one upstream connection of an h1Pool.
type upConn struct {
	pool *h1Pool
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
}

// get returns an idle connection, or dials one. With probe, an idle
// connection is first checked for a close by the upstream (one syscall):
// for requests that cannot be sent again. A request that can is retried
// on a new connection instead (exchange.run).
func (hp *h1Pool) get(probe bool) (up *upConn, reused bool, err error) {
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
		up.close()
	}
	tc, err := hp.p.dialTLS(context.Background())
	if err != nil {
		return nil, false, err
	}
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != "" && proto != "http/1.1" {
		tc.Close()
		return nil, false, fmt.Errorf("upstream %s negotiated ALPN %q for an http1 route", hp.p.route.Upstream, proto)
	}
	up = &upConn{pool: hp, tc: tc, limit: -1}
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

// upBufSize is the read and write buffer of an upstream connection.
const upBufSize = 4 << 10

// put returns a connection after a complete exchange.
func (hp *h1Pool) put(up *upConn) {
	hp.mu.Lock()
	if hp.closed || len(hp.idle) >= hp.opts.MaxIdlePerPool {
		hp.mu.Unlock()
		up.close()
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
func (hp *h1Pool) sweepIdle() {
	hp.mu.Lock()
	now := time.Now()
	var expired []*upConn
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
		up.close()
	}
}

// close retires the pool: idle connections close now, busy ones when
// their exchange ends.
func (hp *h1Pool) close() {
	hp.mu.Lock()
	hp.closed = true
	idle := hp.idle
	hp.idle = nil
	if hp.sweep != nil {
		hp.sweep.Stop()
	}
	hp.mu.Unlock()
	for _, up := range idle {
		up.close()
	}
}

// closeNow closes every connection of the pool, busy or not.
func (hp *h1Pool) closeNow() {
	hp.close()
	hp.mu.Lock()
	all := make([]*upConn, 0, len(hp.all))
	for up := range hp.all {
		all = append(all, up)
	}
	hp.mu.Unlock()
	for _, up := range all {
		up.close()
	}
}

// close closes the connection and forgets it.
func (up *upConn) close() {
	up.tc.Close()
	up.pool.mu.Lock()
	delete(up.pool.all, up)
	up.pool.mu.Unlock()
}

// alive probes an idle connection without reading it: an upstream that
// closed it (idle timeout, restart) left a FIN or a TLS alert behind,
// which a one-byte MSG_PEEK sees; EAGAIN means open and quiet.
func (up *upConn) alive() bool {
	if up.raw == nil {
		return true
	}
	open := false
	err := up.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		open = errno == syscall.EAGAIN
		return true
	})
	return err == nil && open
}

// readResponse reads a response head, within the response header limits.
func (up *upConn) readResponse(r *http.Request, opts UpstreamOptions) (*http.Response, error) {
	up.limitMax = opts.MaxResponseHeaderBytes
	up.limit = int64(opts.MaxResponseHeaderBytes)
	if t := opts.ResponseHeaderTimeout; on(t) {
		up.tc.SetReadDeadline(time.Now().Add(t))
	}
	res, err := http.ReadResponse(up.br, r)
	if on(opts.ResponseHeaderTimeout) {
		up.tc.SetReadDeadline(time.Time{})
	}
	limited := up.limit == 0
	up.limit = -1
	switch {
	case err != nil && limited:
		// The same words as net/http's own transport, so both paths read alike.
		return nil, &headerLimitError{limit: up.limitMax, err: fmt.Errorf("server response headers exceeded %d bytes; aborted", up.limitMax)}
	case err != nil:
		return nil, fmt.Errorf("reading the response from upstream: %w", err)
	}
	return res, nil
}

// reusable reports that the connection is at a message boundary and the
// upstream did not ask to close it.
func (up *upConn) reusable(res *http.Response) bool {
	return !res.Close && up.br.Buffered() == 0
}

// upReader reads an upstream connection for its buffered reader, counting
// and bounding what a response head takes.
type upReader struct{ up *upConn }

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
