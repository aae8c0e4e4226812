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
	cancel  context.CancelCauseFunc
	rc      deadliner

	mu          sync.Mutex
	stopped     bool
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
	t.touch()
	t.mu.Lock()
	defer t.mu.Unlock()
	if on(l.StreamIdleTimeout) {
		t.idleT = time.AfterFunc(l.StreamIdleTimeout, t.checkIdle)
	}
	if on(l.RequestTimeout) {
		lim := &limitError{status: http.StatusGatewayTimeout,
			what: fmt.Sprintf("the request took longer than %s", l.RequestTimeout),
			key:  keyRequestTimeout, value: units.FormatDuration(l.RequestTimeout)}
		t.reqT = time.AfterFunc(l.RequestTimeout, func() { t.fire(lim) })
	}
	return ctx, t
}

// errNoLongerAllowed ends a request that a reload no longer allows.
var errNoLongerAllowed = errors.New("proxy: the reloaded config no longer allows this request")

// Close ends the request now (liveConns calls it on reload).
func (t *streamTimer) Close() error {
	t.cancel(errNoLongerAllowed)
	return nil
}

// touch records that bytes moved.
func (t *streamTimer) touch() { t.last.Store(time.Now().UnixNano()) }

func (t *streamTimer) checkIdle() {
	idle := time.Since(time.Unix(0, t.last.Load()))
	if idle < t.idle {
		t.mu.Lock()
		if !t.stopped {
			t.idleT.Reset(t.idle - idle)
		}
		t.mu.Unlock()
		return
	}
	t.fire(&limitError{status: http.StatusGatewayTimeout,
		what: fmt.Sprintf("no byte moved on the request for %s", t.idle),
		key:  keyStreamIdleTimeout, value: units.FormatDuration(t.idle)})
}

// fire ends the request because of lim, once, unless it already ended.
func (t *streamTimer) fire(lim *limitError) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || !t.cause.CompareAndSwap(nil, lim) {
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
	}
}
