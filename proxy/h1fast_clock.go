package proxy

import (
	"sync"
	"time"
)

// fastClock checks the deadlines of the fast path's connections: the wait
// for a connection's next request (fastLinger, limits.idle_timeout, the
// first request's limits.header_read_timeout), the start of the client
// watch (clientWatchDelay) and the stream idle timeout of the exchange in
// progress. A request sets none of them as a runtime timer; it stores
// them as times, and one timer per Server, every fastTick while the fast
// path has connections, finds those that passed.
//
// Setting a runtime timer while no thread waits in the poller wakes one
// (runtime.wakeNetPoller): a futex wake, a spin and a futex sleep on a
// second thread, at both idle-to-busy transitions of every request on a
// proxy that is not saturated. With per-request timers procmesh used
// 1.24-1.31x HAProxy's CPU per request at 1,000 req/s; without them
// 1.00-1.04x (bench/results/2026-12-04-s8-pprof/rate-syscalls.md). HAProxy
// and Envoy check their timeouts the same way, from their event loop. The
// price is precision: a deadline is acted on up to fastTick after it
// passed.
type fastClock struct {
	s *Server

	mu      sync.Mutex
	t       *time.Timer
	running bool
	conns   []*fastConn // reused by each tick
}

// fastTick is how often the clock looks; a deadline is late by at most
// this much.
const fastTick = 50 * time.Millisecond

// ensure starts the clock if it is not running.
func (c *fastClock) ensure() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return
	}
	c.running = true
	if c.t == nil {
		c.t = time.AfterFunc(fastTick, c.tick)
	} else {
		c.t.Reset(fastTick)
	}
}

// tick acts on the deadlines that passed, and runs again while the fast
// path has connections.
func (c *fastClock) tick() {
	c.mu.Lock()
	conns := c.s.fast.appendTo(c.conns[:0])
	c.conns = conns
	now := time.Now()
	for _, fc := range conns {
		fc.clockTick(now)
	}
	clear(conns)
	if len(conns) == 0 {
		c.running = false
	} else {
		c.t.Reset(fastTick)
	}
	c.mu.Unlock()
}

// stop ends the clock; a later connection starts it again.
func (c *fastClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t != nil {
		c.t.Stop()
	}
	c.running = false
}

// waitExpired marks fastConn.waitDL once the clock ended the wait.
const waitExpired = -1

// clockTick acts on fc's deadlines that passed at now.
func (fc *fastConn) clockTick(now time.Time) {
	if dl := fc.waitDL.Load(); dl > 0 && now.UnixNano() >= dl {
		// Under the connection's lock, so that the wait, if it ends
		// meanwhile, lifts this deadline after it is set (endWait).
		fc.cc.mu.Lock()
		if fc.waitDL.CompareAndSwap(dl, waitExpired) {
			fc.cc.UnixConn.SetReadDeadline(time.Unix(1, 0))
		}
		fc.cc.mu.Unlock()
	}
	// The watch and the stream timer are armed only during an exchange,
	// when exTimer is set: an idle connection costs the clock two loads.
	if t := fc.exTimer.Load(); t != nil {
		fc.watch.tick(now)
		t.tickIdle(now)
	}
}

// startWait records the deadline of the wait for the next request (zero:
// none) for the clock.
func (fc *fastConn) startWait(dl time.Time) {
	if dl.IsZero() {
		fc.waitDL.Store(0)
		return
	}
	fc.waitDL.Store(dl.UnixNano())
}

// endWait ends the wait's deadline; if the clock had ended the wait, it
// lifts the read deadline the clock set on the socket.
func (fc *fastConn) endWait() {
	if fc.waitDL.Swap(0) != waitExpired {
		return
	}
	cc := fc.cc
	cc.mu.Lock()
	cc.UnixConn.SetReadDeadline(cc.readDeadline())
	cc.mu.Unlock()
}
