package proxy

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/procmesh/procmesh/proxy/internal/defaults"
)

// The HTTP/1.1 fast path serves the main socket's plain HTTP/1.1 requests
// itself: it reads a request head the h1Scanner released, decides it with
// the same Server.decide as serveHTTP (identity, limits, route, policy),
// writes it
// to a pooled mTLS connection of the caller's own (identity, route) pool
// and copies the response back, on the connection's one goroutine. No
// net/http server, ReverseProxy or Transport goroutines sit in between, and
// a connection waiting for its next request holds no buffer.
//
// It serves only what it can serve exactly (h1fast_head.go): HTTP/1.1
// requests net/http's server would accept, without Upgrade, Expect or
// Transfer-Encoding, with a body of at most fastMaxBody bytes, that the
// policy allows, to http1 routes. Anything
// else, refusals included, is handed to net/http with the bytes already
// read (handoff.go), and net/http serves the connection from that request
// on, through serveHTTP: one decide decides both paths, and every refusal
// is written by the same code (Server.refuse).

// fastMaxBody is the largest request body the fast path forwards. It
// writes a body before it reads the response; a body this small fits the
// socket buffers on the way, so an upstream that answers before reading
// it cannot deadlock the exchange. Larger bodies go to net/http, whose
// transport writes and reads at once.
const fastMaxBody = 64 << 10

// Connection states of the fast path, for Shutdown.
const (
	fastIdle int32 = iota
	fastActive
	fastClosed
)

// fastConn is a client connection served by the fast path.
type fastConn struct {
	srv   *Server
	cc    *clientConn
	state atomic.Int32
	br    *bufio.Reader            // while a request is read; pooled
	head  []byte                   // copy of the head being served, for a handoff
	watch clientWatch              // for a client hanging up while the upstream thinks
	live  atomic.Pointer[liveConn] // the exchange in progress, for a reload
	// For the clock (fastClock): the end of the wait for the next request
	// (unix nanos; 0: none; waitExpired: the clock ended it), and the
	// stream timer of the exchange in progress.
	waitDL  atomic.Int64
	exTimer atomic.Pointer[streamTimer]
	// waitUntil ends the wait for the next request (zero: no end); moved
	// says the wait already moved to a fresh goroutine (fastLinger).
	waitUntil time.Time
	moved     bool
}

// serveFast serves one connection of the main socket until it closes or
// is handed to net/http.
func (s *Server) serveFast(cc *clientConn) {
	fc := &fastConn{srv: s, cc: cc}
	fc.watch.cc = cc
	cc.ident = s.startAttest(s.base, cc.UnixConn)
	if cc.bucket.over && s.shedUnattested(cc) {
		return // F11: no identity, and its uid's bucket is full
	}
	if !s.fast.add(fc) {
		cc.Close()
		return
	}
	s.clock.ensure()
	// A new connection has ReadHeaderTimeout to send its first request, as
	// under net/http; then IdleTimeout between requests.
	fc.waitUntil = deadlineAfter(s.opts.ReadHeaderTimeout)
	fc.run()
}

// run serves the connection on this goroutine until it closes, is handed
// to net/http, or its wait moves to a new goroutine.
func (fc *fastConn) run() {
	s, cc := fc.srv, fc.cc
	outcome := fc.serve()
	if outcome == fastRespawn {
		go fc.run()
		return
	}
	fc.releaseReader()
	s.fast.remove(fc)
	if outcome == fastHandoff {
		s.stats.handoffs.Add(1)
		if !s.handoff.hand(cc) {
			cc.Close()
		}
		return
	}
	cc.Close()
}

// Outcomes of fastConn.serve.
type fastOutcome uint8

const (
	fastDone    fastOutcome = iota // close the connection
	fastHandoff                    // hand it to net/http
	fastRespawn                    // wait for its next request on a new goroutine
	fastNext                       // (serveOne) served; the connection may carry another request
)

// fastLinger is how long a connection waits for its next request on the
// goroutine that served the last one. A goroutine's stack grows to what
// serving a request takes (TLS, parsing: 4-8 KiB) and stays that size;
// a connection idle longer waits on a new goroutine, whose stack is the
// minimum (2 KiB), so idle keep-alive connections cost less memory. Busy
// connections, whose next request comes sooner, never pay for the move.
const fastLinger = 100 * time.Millisecond

// deadlineAfter is now+d, or no deadline when d is off.
func deadlineAfter(d time.Duration) time.Time {
	if !defaults.On(d) {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// serve runs the connection's requests until it is done with them.
func (fc *fastConn) serve() fastOutcome {
	s, cc := fc.srv, fc.cc
	for {
		if fc.br == nil || fc.br.Buffered() == 0 {
			// Nothing pipelined: wait, without a buffer, for the next head.
			fc.releaseReader()
			dl, lingering := fc.waitUntil, false
			if l := time.Now().Add(fastLinger); !fc.moved && (dl.IsZero() || l.Before(dl)) {
				dl, lingering = l, true
			}
			fc.startWait(dl) // the clock ends the wait (fastClock)
			err := cc.awaitReady()
			fc.endWait()
			if err != nil {
				var ne net.Error
				if lingering && errors.As(err, &ne) && ne.Timeout() && !s.fast.stopping() {
					fc.moved = true
					return fastRespawn
				}
				return fastDone
			}
		}
		fc.moved = false
		fc.waitUntil = time.Time{}
		if !fc.state.CompareAndSwap(fastIdle, fastActive) {
			return fastDone // closed by Shutdown
		}
		switch fc.serveOne() {
		case fastHandoff:
			fc.handBack()
			return fastHandoff
		case fastDone:
			return fastDone
		}
		if !fc.state.CompareAndSwap(fastActive, fastIdle) || s.fast.stopping() {
			return fastDone
		}
		fc.waitUntil = deadlineAfter(s.opts.IdleTimeout)
	}
}

// serveOne reads one request head and serves it (fastNext: the connection
// may carry another request; fastDone: it may not), or decides to hand it
// over (fastHandoff).
func (fc *fastConn) serveOne() fastOutcome {
	s, cc := fc.srv, fc.cc
	if fc.br == nil {
		fc.br = s.readers.get(cc)
	}
	fits, err := fc.copyHead()
	if err != nil {
		return fastDone // the client left or timed out between requests
	}
	if !fits {
		return fastHandoff
	}
	r, err := fc.readRequest()
	if err != nil {
		return fastHandoff // net/http answers it 400
	}
	if !fastEligible(r) || cc.refusalFor(r) != nil {
		return fastHandoff
	}
	d, ref := s.decide(s.base, r, cc, cc.headWriter(false))
	if ref != nil {
		return fastHandoff
	}
	fc.head = fc.head[:0]
	cc.headWriter(true) // this request is the fast path's: its head is taken
	s.stats.fastRequests.Add(1)
	if !fc.relay(r, d) {
		return fastDone
	}
	return fastNext
}

// readRequest reads the request whose head copyHead found: parsed by
// parseFastRequest when it can, else by http.ReadRequest and then held to
// the checks of net/http's server (an error hands it to net/http).
func (fc *fastConn) readRequest() (*http.Request, error) {
	if r, ok := parseFastRequest(fc.head, fc.br, fc.srv.opts.MaxRequestHeaders); ok {
		fc.br.Discard(len(fc.head))
		return r, nil
	}
	before := fc.br.Buffered()
	r, err := http.ReadRequest(fc.br)
	// A head ReadRequest refused may be half read: drop the rest of it
	// from the reader, so that a handoff replays it once (fc.head).
	if rest := len(fc.head) - (before - fc.br.Buffered()); rest > 0 {
		fc.br.Discard(rest)
	}
	if err == nil && !serverChecks(r, fc.head) {
		err = errServerChecks
	}
	return r, err
}

var errServerChecks = errors.New("a request net/http's server refuses")

func (fc *fastConn) releaseReader() {
	if fc.br != nil {
		fc.srv.readers.put(fc.br)
		fc.br = nil
	}
}

// fastReaderSize bounds the request heads the fast path reads itself;
// larger heads (up to limits.max_request_header_bytes) go to net/http.
const fastReaderSize = 8 << 10
