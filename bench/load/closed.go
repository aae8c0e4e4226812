package load

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Closed configures a closed-loop run: Conns connections, each sending its
// next request as soon as the last response arrived.
type Closed struct {
	Dial     Dialer
	Request  []byte
	Conns    int
	Warmup   time.Duration // run but not counted
	Duration time.Duration // counted
	// NewConnPerRequest closes each connection after one response and
	// dials again: a TCP connection and a full handshake per request.
	NewConnPerRequest bool
}

// ClosedResult is what a closed-loop run measured.
type ClosedResult struct {
	Requests int64         // completed with 200 within the counted window
	All      int64         // completed with 200, warm-up included
	Errors   int64         // failed requests and dials, whole run
	Elapsed  time.Duration // the counted window
	FirstErr string
}

// RPS is requests per second in the counted window.
func (r ClosedResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// errCounter counts failures and keeps the first.
type errCounter struct {
	n     atomic.Int64
	first atomic.Pointer[string]
}

func (e *errCounter) add(err error) {
	e.n.Add(1)
	s := err.Error()
	e.first.CompareAndSwap(nil, &s)
}

func (e *errCounter) firstErr() string {
	if p := e.first.Load(); p != nil {
		return *p
	}
	return ""
}

// worker keeps one keep-alive connection, redialling when it breaks. Its
// connection is closed when ctx ends, which unblocks a pending Do.
type worker struct {
	dial Dialer
	once bool // one request per connection
	req  []byte
	errs *errCounter
	mu   sync.Mutex
	h    *H1Conn
}

func (w *worker) conn(ctx context.Context) *H1Conn {
	w.mu.Lock()
	h := w.h
	w.mu.Unlock()
	if h != nil {
		return h
	}
	c, err := w.dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.errs.add(err)
			sleepCtx(ctx, 10*time.Millisecond)
		}
		return nil
	}
	h = NewH1Conn(c, w.req)
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx.Err() != nil {
		h.Close()
		return nil
	}
	w.h = h
	return h
}

func (w *worker) drop() {
	w.mu.Lock()
	if w.h != nil {
		w.h.Close()
		w.h = nil
	}
	w.mu.Unlock()
}

// do runs one request; it reports whether it succeeded.
func (w *worker) do(ctx context.Context) bool {
	h := w.conn(ctx)
	if h == nil {
		return false
	}
	keep, err := h.Do()
	if err != nil {
		if ctx.Err() == nil {
			w.errs.add(err)
		}
		w.drop()
		return false
	}
	if !keep || w.once {
		w.drop()
	}
	return true
}

// RunClosed runs c. The counted window starts after Warmup; only responses
// completed inside it count.
func RunClosed(ctx context.Context, c Closed) ClosedResult {
	var counting atomic.Bool
	var done, all atomic.Int64
	errs := &errCounter{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range c.Conns {
		w := &worker{dial: c.Dial, req: c.Request, errs: errs, once: c.NewConnPerRequest}
		stop := context.AfterFunc(ctx, w.drop)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			defer w.drop()
			for ctx.Err() == nil {
				if !w.do(ctx) {
					continue
				}
				all.Add(1)
				if counting.Load() {
					done.Add(1)
				}
			}
		}()
	}
	elapsed := measure(ctx, c.Warmup, c.Duration, &counting)
	n := done.Load()
	cancel()
	wg.Wait()
	return ClosedResult{Requests: n, All: all.Load(), Errors: errs.n.Load(), Elapsed: elapsed, FirstErr: errs.firstErr()}
}

// measure lets the workers warm up, then sets counting for d and returns
// how long it was set: the window every closed-loop figure is taken over.
func measure(ctx context.Context, warmup, d time.Duration, counting *atomic.Bool) time.Duration {
	sleepCtx(ctx, warmup)
	counting.Store(true)
	start := time.Now()
	sleepCtx(ctx, d)
	counting.Store(false)
	return time.Since(start)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
