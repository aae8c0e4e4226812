package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procmesh/procmesh/internal/units"
	"github.com/procmesh/procmesh/proxy/internal/defaults"
)

// streamTimer ends a forwarded request on which no byte moved, either way,
// for StreamIdleTimeout (the wait for the upstream's response headers
// included), or which lasted RequestTimeout (THREATS P7). Ending it cancels
// the upstream request and, through the response's read and write
// deadlines, frees a handler blocked on a client that stopped sending its
// body or stopped reading the response; the goroutines and buffers of the
// request are then released.
type streamTimer struct {
	idle    time.Duration
	last    atomic.Int64 // unix nanos of the last byte
	cause   atomic.Pointer[limitError]
	started atomic.Bool // the upstream's response is being copied to the client
	// cancel ends the request: its context's, or the fast path's.
	cancel func(error)
	rc     deadliner

	// clocked: the idle timeout is checked by the fast path's clock
	// (tickIdle), not by idleT.
	clocked bool

	mu          sync.Mutex
	stopped     bool
	gen         uint64 // arms so far: a callback of an earlier arm does nothing
	idleT, reqT *time.Timer
}

// deadliner moves the deadlines that free a request's goroutines: an
// http.ResponseController on the net/http path, fastDeadlines on the
// fast path.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// newStreamTimer starts the timers of one request; stop them when the
// request ends. The returned context ends when a timer fires.
func newStreamTimer(ctx context.Context, rc deadliner, l Limits) (context.Context, *streamTimer) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := &streamTimer{idle: l.StreamIdleTimeout, cancel: cancel, rc: rc}
	t.arm(l)
	return ctx, t
}

// newReusableTimer returns a stopped timer for the requests of one
// connection, one at a time (arm, then stop); cancel is told why a request
// was ended. Its idle timeout is left to the fast path's clock, which
// calls tickIdle while the timer serves a connection (fastConn.exTimer).
func newReusableTimer(rc deadliner, l Limits, cancel func(error)) *streamTimer {
	return &streamTimer{idle: l.StreamIdleTimeout, cancel: cancel, rc: rc, stopped: true, clocked: true}
}

// arm starts the timers of a request (StreamIdleTimeout, RequestTimeout)
// and returns the arm's generation.
func (t *streamTimer) arm(l Limits) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	t.stopped = false
	t.cause.Store(nil)
	t.started.Store(false)
	t.touch()
	if defaults.On(t.idle) && !t.clocked {
		if t.idleT == nil {
			t.idleT = time.AfterFunc(t.idle, t.checkIdle)
		} else {
			t.idleT.Reset(t.idle)
		}
	}
	if defaults.On(l.RequestTimeout) {
		lim := &limitError{status: http.StatusGatewayTimeout,
			what: fmt.Sprintf("the request took longer than %s", l.RequestTimeout),
			key:  keyRequestTimeout, value: units.FormatDuration(l.RequestTimeout)}
		g := t.gen
		t.reqT = time.AfterFunc(l.RequestTimeout, func() { t.fire(lim, g) })
	}
	return t.gen
}

// errNoLongerAllowed ends a request that a reload no longer allows.
var errNoLongerAllowed = errors.New("proxy: the reloaded config no longer allows this request")

// Close ends the request now (liveConns calls it on reload).
func (t *streamTimer) Close() error {
	t.cancel(errNoLongerAllowed)
	return nil
}

// armCloser ends one arm's request on reload, and nothing after it: a
// reused timer's later requests were decided afresh.
type armCloser struct {
	t   *streamTimer
	gen uint64
}

func (a *armCloser) Close() error {
	// Under the lock, as fire cancels: once the arm is stopped, the timer
	// may be re-armed for another request, even another connection's.
	a.t.mu.Lock()
	defer a.t.mu.Unlock()
	if a.t.gen == a.gen && !a.t.stopped {
		a.t.cancel(errNoLongerAllowed)
	}
	return nil
}

// touch records that bytes moved.
// touch marks the stream active now, and returns now.
func (t *streamTimer) touch() time.Time {
	now := time.Now()
	t.last.Store(now.UnixNano())
	return now
}

func (t *streamTimer) checkIdle() {
	t.mu.Lock()
	g, stopped := t.gen, t.stopped
	t.mu.Unlock()
	if stopped {
		return
	}
	idle := time.Since(time.Unix(0, t.last.Load()))
	if idle < t.idle {
		t.mu.Lock()
		if !t.stopped && t.gen == g {
			t.idleT.Reset(t.idle - idle)
		}
		t.mu.Unlock()
		return
	}
	t.fireIdle(g)
}

// fireIdle ends arm g's request for the stream idle timeout.
func (t *streamTimer) fireIdle(g uint64) {
	t.fire(streamIdleError(http.StatusGatewayTimeout, "on the request", t.idle), g)
}

// tickIdle ends the armed request if no byte moved for the idle timeout
// (a clocked timer: fastClock calls it).
func (t *streamTimer) tickIdle(now time.Time) {
	if !defaults.On(t.idle) {
		return
	}
	t.mu.Lock()
	g, stopped := t.gen, t.stopped
	t.mu.Unlock()
	if stopped || now.Sub(time.Unix(0, t.last.Load())) < t.idle {
		return
	}
	t.fireIdle(g)
}

// fire ends arm g's request because of lim, once, unless it already ended.
func (t *streamTimer) fire(lim *limitError, g uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || t.gen != g || !t.cause.CompareAndSwap(nil, lim) {
		return
	}
	past := time.Unix(1, 0)
	t.rc.SetReadDeadline(past)
	t.cancel(lim)
	// Only the upstream's response sets started, never the error
	// response that tells the client why the request ended.
	if t.started.Load() {
		t.rc.SetWriteDeadline(past)
	}
}

// stop disarms the timers; after it returns, they touch nothing.
func (t *streamTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.idleT != nil {
		t.idleT.Stop()
	}
	if t.reqT != nil {
		t.reqT.Stop()
		t.reqT = nil
	}
}
