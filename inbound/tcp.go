package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procmesh/procmesh/internal/rawio"
	"github.com/procmesh/procmesh/policy"
)

// tcpConn is an open tcp connection: a caller and the service.
type tcpConn struct {
	tls      *tls.Conn
	svc      net.Conn
	peer     *peer
	byPolicy atomic.Bool
}

// endByPolicy closes a connection a reloaded policy no longer allows.
func (c *tcpConn) endByPolicy() {
	c.byPolicy.Store(true)
	c.tls.Close()
	c.svc.Close()
}

// serveTCP authorises the connection, connects to the service (attested),
// writes the PROXY v2 header if asked, and copies bytes both ways.
func (l *listener) serveTCP(tc *tls.Conn, p *peer, start time.Time) {
	defer tc.Close()
	cfg := l.cfg.Load()
	ev := &auditEvent{kind: "inbound_connection", listener: cfg.Name, peer: p, addr: p.addr, start: start}
	defer l.audit(ev)
	dec := cfg.Policy.Decide(policy.Request{Source: p.id, Route: cfg.Name, Connection: true})
	ev.decision = &dec
	if !dec.Allow {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.srv.opts.DialTimeout)
	sc, sv, err := l.svc.Load().dial(ctx)
	cancel()
	if err != nil {
		ev.err = err
		return
	}
	defer sc.Close()
	ev.serving = sv
	if cfg.PassIdentity == "proxy-v2" {
		hdr, err := ProxyV2Header(p.addr, tc.LocalAddr(), p.id.String())
		if err == nil {
			_, err = sc.Write(hdr)
		}
		if err != nil {
			ev.err = err
			return
		}
	}
	c := &tcpConn{tls: tc, svc: rawio.Wrap(sc), peer: p}
	l.mu.Lock()
	l.tcp[c] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.tcp, c)
		l.mu.Unlock()
	}()
	// Re-decide once registered: a reload between the decision and here
	// would otherwise miss this connection.
	if !l.cfg.Load().Policy.Decide(policy.Request{Source: p.id, Route: cfg.Name, Connection: true}).Allow {
		ev.err = errors.New("policy changed by a reload")
		return
	}
	ev.up, ev.down, ev.err = l.pipe(tc, sc)
	if c.byPolicy.Load() {
		ev.err = errors.New("closed: the reloaded policy no longer allows this connection")
	}
}

// pipe copies both ways until both ends are done, or nothing moved for
// limits.stream_idle_timeout.
func (l *listener) pipe(client *tls.Conn, svc net.Conn) (up, down int64, err error) {
	var idleErr atomic.Value
	touch := func() {}
	if d := l.srv.opts.Limits.StreamIdleTimeout; d > 0 {
		iw := newIdleWatch(d, func() {
			idleErr.Store(errLimit("limits.stream_idle_timeout"))
			client.Close()
			svc.Close()
		})
		defer iw.stop()
		touch = iw.touch
	}
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		up, upErr = copyTouch(svc, client, l.srv.bufs, touch)
		if cw, ok := svc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	var downErr error
	down, downErr = copyTouch(client, svc, l.srv.bufs, touch)
	client.CloseWrite()
	wg.Wait()
	if v := idleErr.Load(); v != nil {
		return up, down, v.(error)
	}
	return up, down, errors.Join(ignoreClosed(upErr), ignoreClosed(downErr))
}

func copyTouch(dst io.Writer, src io.Reader, bufs httputil.BufferPool, touch func()) (int64, error) {
	buf := bufs.Get()
	defer bufs.Put(buf)
	var n int64
	for {
		m, rerr := src.Read(buf)
		if m > 0 {
			touch()
			w, werr := dst.Write(buf[:m])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return n, nil
			}
			return n, rerr
		}
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
