package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procmesh/procmesh/proxy/internal/upstream"
)

// fastExchange is the state of one fast-path exchange, pooled and reset
// for each request: the timer, deadlines and counters a request needs
// cost no allocation. A reused timer's callbacks and reload closers from
// earlier requests act on their own arm only (streamTimer.gen).
type fastExchange struct {
	dl      fastDeadlines
	timer   *streamTimer
	body    countingReader
	x       exchange
	aborted atomic.Bool // a reload ended the exchange
}

// newFastExchange makes the pooled state; the timer's cancel ends the
// exchange on a reload's verdict, and cancels a transport's round trip.
func newFastExchange(l Limits) *fastExchange {
	fx := &fastExchange{}
	fx.timer = newReusableTimer(&fx.dl, l, func(cause error) {
		if errors.Is(cause, errNoLongerAllowed) {
			fx.aborted.Store(true)
			fx.dl.abort()
			return
		}
		// A limit fired: it moved the deadlines itself; an exchange
		// through a transport ends by its context.
		fx.dl.cancelTransport(cause)
	})
	return fx
}

// relay sends one fast-path request upstream and copies the response to
// the client; it reports whether the client connection may carry another
// request.
func (fc *fastConn) relay(r *http.Request, d *decision) (keep bool) {
	s, cc := fc.srv, fc.cc
	id, route, preq := d.id, d.route, d.req
	ev := &auditEvent{kind: "request", start: time.Now(), method: r.Method, target: r.RequestURI,
		id: id, route: route, decision: &d.dec, jwt: d.jwt}
	defer ev.write(&s.opts)
	// The state comes from a pool, so an idle connection holds none.
	fx, _ := s.exchanges.Get().(*fastExchange)
	if fx == nil {
		fx = newFastExchange(s.opts.Limits)
	}
	defer s.exchanges.Put(fx)
	fx.aborted.Store(false)
	fx.dl.reset(cc)

	// The stream limits and a reload act through the timer, as on the
	// net/http path: its deadlines free whichever side the exchange waits
	// on.
	timer := fx.timer
	gen := timer.arm(s.opts.Limits)
	defer timer.stop()
	l := &liveConn{end: &armCloser{t: timer, gen: gen}, id: id, req: preq}
	// Registered on the connection, not in Server.live: a reload finds it
	// through the fast path's connections (fastConns.live), and a request
	// costs no lock or map update.
	fc.live.Store(l)
	defer fc.live.Store(nil)
	fc.exTimer.Store(timer) // its idle timeout: the clock's (fastClock)
	defer fc.exTimer.Store(nil)

	body := &fx.body
	body.reset(r.Body, timer, s.opts.MaxRequestBodyBytes)
	fi := forwardInfo{id: id, route: route, ev: ev, body: body, timer: timer}
	x := &fx.x
	p := s.upstreamFor(id, route)
	*x = exchange{fc: fc, r: r, body: body, timer: timer, dl: &fx.dl, h1: p.H1(), ev: ev}
	var err error
	if x.h1 != nil {
		err = x.run()
	} else {
		err = x.runTransport(p)
	}
	if err == nil {
		return !r.Close && !x.clientClose
	}
	// From here nothing but this goroutine moves the deadlines.
	timer.stop()
	fx.dl.settle()
	ev.up, ev.down = body.n.Load(), x.down
	if fc.watch.gone.Load() {
		ev.status, ev.err = 499, errClientGone // nobody to answer
		return false
	}
	if ev.status = x.status; x.started {
		// The response was under way: all that is left is to cut it.
		ev.err = err
		if lim := timer.cause.Load(); lim != nil {
			ev.err = lim
		}
		return false
	}
	status, msg, cause := fi.failure(r, err)
	if fx.aborted.Load() {
		status, msg, cause = http.StatusForbidden, "procmesh: denied by policy: the reloaded config no longer allows this request\n", errNoLongerAllowed
	}
	ev.status, ev.err = status, cause
	// After a failure the client's body may be half read and its
	// deadlines spent: the connection ends with the answer.
	cc.SetWriteDeadline(time.Now().Add(errorWriteTimeout))
	bw := s.writers.get(cc)
	writeFastError(bw, status, msg)
	bw.Flush()
	s.writers.put(bw)
	cc.markDrainOnClose()
	return false
}

// errorWriteTimeout bounds the write of an error answer to a client that
// does not read.
const errorWriteTimeout = 5 * time.Second

// fastDeadlines lets the stream timer free a fast-path exchange: it moves
// the deadlines of the client connection and of the upstream connection
// in use (streamTimer.fire, and abort for a reload).
type fastDeadlines struct {
	cc *clientConn
	up atomic.Pointer[upstream.Conn]

	mu      sync.Mutex
	settled bool
	// cancel ends the round trip of an exchange through a transport
	// (http2, http3, auto routes), whose connections have no deadlines
	// of ours; nil otherwise.
	cancel context.CancelCauseFunc
}

func (d *fastDeadlines) SetReadDeadline(t time.Time) error {
	d.cc.SetReadDeadline(t)
	if up := d.up.Load(); up != nil {
		up.SetDeadline(t)
	}
	return nil
}

func (d *fastDeadlines) SetWriteDeadline(t time.Time) error {
	return d.cc.UnixConn.SetWriteDeadline(t)
}

// reset readies the deadlines for an exchange on cc.
func (d *fastDeadlines) reset(cc *clientConn) {
	d.up.Store(nil)
	d.mu.Lock()
	d.cc, d.settled, d.cancel = cc, false, nil
	d.mu.Unlock()
}

// abort ends the exchange now: a reload no longer allows it.
func (d *fastDeadlines) abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return
	}
	past := time.Unix(1, 0)
	d.SetReadDeadline(past)
	d.SetWriteDeadline(past)
	if d.cancel != nil {
		d.cancel(errNoLongerAllowed)
	}
}

// setTransport registers the cancel of a transport's round trip.
func (d *fastDeadlines) setTransport(cancel context.CancelCauseFunc) {
	d.mu.Lock()
	d.cancel = cancel
	d.mu.Unlock()
}

// cancelTransport ends a transport's round trip, if one is under way.
func (d *fastDeadlines) cancelTransport(cause error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil && !d.settled {
		d.cancel(cause)
	}
}

// settle stops abort from moving deadlines from now on, so the exchange
// can write its error answer.
func (d *fastDeadlines) settle() {
	d.mu.Lock()
	d.settled = true
	d.mu.Unlock()
}

const fastWriterSize = 4 << 10
