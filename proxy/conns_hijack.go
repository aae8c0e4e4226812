package proxy

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/procmesh/procmesh/proxy/internal/defaults"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The connection limits' admission (F9), the hand-over of hijacked connections to the
// Server, their idle timeout, and the rapid-reset rule (P5).

// admit counts the connection against its identity's limit, once; it
// returns the refusal for a connection over either limit.
func (c *clientConn) admit(id spiffeid.ID) *limitError {
	if c.overTotal {
		return &limitError{status: http.StatusServiceUnavailable, what: "too many client connections are open; retry later",
			key: keyMaxConnections, value: strconv.Itoa(c.srv.opts.MaxConnections)}
	}
	c.admitOnce.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed.Load() {
			return // nothing to count; the request fails on the closed connection
		}
		if c.srv.counts.addID(id, c.srv.opts.MaxConnectionsPerIdentity) {
			c.id = id
			c.leaveUnattested() // F11
			return
		}
		c.admitErr = &limitError{status: http.StatusServiceUnavailable,
			what: id.String() + " has too many connections open; close idle ones or retry later",
			key:  keyMaxConnectionsPerID, value: strconv.Itoa(c.srv.opts.MaxConnectionsPerIdentity)}
	})
	return c.admitErr
}

// onHijack is called by net/http when a handler takes the connection over
// (WebSocket, CONNECT): the connection leaves net/http's tracking for the
// Server's, and the stream idle timeout starts.
func (c *clientConn) onHijack() {
	c.mu.Lock()
	if c.scan != nil {
		c.scan.Pass()
	}
	c.mu.Unlock()
	c.lastActive.Store(time.Now().UnixNano())
	c.hijacked.Store(true)
	if !c.srv.conns.add(c) {
		c.Close() // shutting down
		return
	}
	c.tracked.Store(true)
	if d := c.srv.opts.StreamIdleTimeout; defaults.On(d) {
		c.mu.Lock()
		c.idleTimer = time.AfterFunc(d, c.checkIdle)
		c.mu.Unlock()
	}
}

// checkIdle closes a hijacked connection on which nothing moved for
// StreamIdleTimeout, or checks again when something did.
func (c *clientConn) checkIdle() {
	d := c.srv.opts.StreamIdleTimeout
	idle := time.Since(time.Unix(0, c.lastActive.Load()))
	if idle < d {
		c.mu.Lock()
		if !c.closed.Load() {
			c.idleTimer.Reset(d - idle)
		}
		c.mu.Unlock()
		return
	}
	c.idleFired.Store(true)
	c.Close()
}

// streamEnded counts an HTTP/2 stream that ended; premature means the
// client reset it within a second of opening it. Once at least
// rapidResetMinStreams streams ended and half of them or more were reset
// early, the connection is closed, and streamEnded reports true that once:
// that is a rapid-reset attack (P5),
// which Go's server otherwise only bounds in concurrency. Envoy applies
// the same rule (overload.premature_reset_total_stream_count = 500,
// premature_reset_min_stream_lifetime_seconds = 1).
func (c *clientConn) streamEnded(premature bool) bool {
	total := c.streams.Add(1)
	resets := c.resets.Load()
	if premature {
		resets = c.resets.Add(1)
	}
	if total >= rapidResetMinStreams && resets*2 >= total && c.rapidReset.CompareAndSwap(false, true) {
		c.Close()
		return true
	}
	return false
}

const (
	rapidResetMinStreams = 500
	rapidResetLifetime   = time.Second
)

// connState is net/http's ConnState hook.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	if cc, ok := c.(*clientConn); ok && st == http.StateHijacked {
		cc.onHijack()
	}
}
