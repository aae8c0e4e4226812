package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/procmesh/procmesh/proxy/internal/upstream"
)

// exchange is one request and its response on the fast path.
type exchange struct {
	fc    *fastConn
	r     *http.Request
	body  *countingReader
	timer *streamTimer
	dl    *fastDeadlines
	h1    *upstream.H1Pool
	ev    *auditEvent

	status      int
	started     bool // response bytes went to the client
	clientClose bool // the response ends the client connection
	down        int64
}

// run writes the request upstream, retrying once on a fresh connection
// when a reused one turns out closed before anything came back and the
// request can be sent again, and copies the response back.
func (x *exchange) run() error {
	replayable := x.r.ContentLength == 0
	for attempt := 0; ; attempt++ {
		up, reused, err := x.h1.Get(!replayable)
		if err != nil {
			return err
		}
		x.dl.up.Store(up)
		res, err := x.roundTrip(up)
		if err != nil {
			up.Close()
			if reused && replayable && attempt == 0 && up.Received() == 0 && x.timer.cause.Load() == nil && !x.fc.watch.gone.Load() {
				continue
			}
			return err
		}
		err = x.respond(res)
		x.dl.up.Store(nil)
		x.timer.stop()
		if err == nil && up.Reusable(res) && x.timer.cause.Load() == nil {
			x.h1.Put(up)
		} else {
			up.Close()
		}
		return err
	}
}

// roundTrip writes the request and reads the response head, forwarding
// interim (1xx) responses to the client.
func (x *exchange) roundTrip(up *upstream.Conn) (*http.Response, error) {
	bw := up.StartRequest()
	writeRequestHead(bw, x.r, x.h1.Host(), x.fc.srv.reqFilter.skip)
	if n := x.r.ContentLength; n > 0 && n <= int64(bw.Available()) {
		// The counting reader marks the stream active itself.
		if _, err := readInto(bw, x.body, n, nil); err != nil {
			return nil, err
		}
	} else if x.r.ContentLength > 0 {
		buf := x.fc.srv.bufs.Get()
		defer x.fc.srv.bufs.Put(buf)
		left := x.r.ContentLength
		for left > 0 {
			n, err := x.body.Read(buf[:min(int64(len(buf)), left)])
			if n > 0 {
				left -= int64(n)
				if _, werr := bw.Write(buf[:n]); werr != nil {
					return nil, werr
				}
				if left > 0 {
					// What the client sends slowly reaches the upstream
					// as it comes.
					if werr := bw.Flush(); werr != nil {
						return nil, werr
					}
				}
			}
			if err != nil && left > 0 {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	x.fc.watch.start(x.dl, x.timer.touch())
	defer x.fc.watch.stop()
	for interim := 0; ; interim++ {
		res, err := up.ReadResponse(x.r)
		if err != nil {
			return nil, err
		}
		x.timer.touch()
		if n, max := headerFields(res.Header), x.fc.srv.opts.MaxResponseHeaders; n > max {
			return nil, responseHeaderCountError(n, max)
		}
		if res.StatusCode >= 200 {
			return res, nil
		}
		if res.StatusCode == http.StatusSwitchingProtocols || interim >= maxInterim {
			return nil, fmt.Errorf("upstream sent %s", res.Status)
		}
		if err := x.interim(res); err != nil {
			return nil, err
		}
	}
}

// finish writes the audit line once the whole response is buffered for
// the client, before its last write, as on the net/http path: a client
// that has its answer finds its line.
func (x *exchange) finish() {
	ev := x.ev
	ev.up, ev.down, ev.status = x.body.n.Load(), x.down, x.status
	ev.write(&x.fc.srv.opts)
}

// maxInterim bounds the 1xx responses before a final one, as net/http's
// transport does.
const maxInterim = 5

// interim passes a 1xx response on to the client.
func (x *exchange) interim(res *http.Response) error {
	bw := x.fc.srv.writers.get(x.fc.cc)
	defer x.fc.srv.writers.put(bw)
	writeResponseHead(bw, res, nil, frameInterim)
	x.started = true
	return bw.Flush()
}

// respond copies the response to the client.
func (x *exchange) respond(res *http.Response) error {
	s := x.fc.srv
	x.timer.started.Store(true)
	if lim := x.timer.cause.Load(); lim != nil {
		res.Body.Close()
		return lim
	}
	x.status = res.StatusCode
	bw := s.writers.get(x.fc.cc)
	defer s.writers.put(bw)
	f := frameLength
	switch {
	case x.r.Method == http.MethodHead || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified:
		f = frameNone
	case res.ContentLength < 0 || len(res.Trailer) > 0:
		f = frameChunked // trailers only travel after a chunked body
	}
	chunked := f == frameChunked
	x.clientClose = x.r.Close
	writeResponseHead(bw, res, x.r, f)
	x.started = true
	if f == frameNone {
		x.finish()
		return bw.Flush()
	}
	if f == frameLength && res.ContentLength <= int64(bw.Available()) {
		return x.respondSmall(bw, res)
	}
	buf := s.bufs.Get()
	defer s.bufs.Put(buf)
	left := res.ContentLength
	for {
		n, err := res.Body.Read(buf)
		if n > 0 {
			x.timer.touch()
			var werr error
			if chunked {
				werr = writeChunk(bw, buf[:n])
			} else {
				_, werr = bw.Write(buf[:n])
				left -= int64(n)
			}
			x.down += int64(n)
			if werr == nil && (chunked || left > 0) {
				werr = bw.Flush() // streams as the upstream sends
			}
			if werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if chunked {
		writeLastChunk(bw, res.Trailer)
	}
	x.finish()
	return bw.Flush()
}

// respondSmall copies a body that fits the writer's free space straight
// into it, behind the head (readInto): head and body leave in one write,
// and an upstream that stops short is still a clean 502.
func (x *exchange) respondSmall(bw *bufio.Writer, res *http.Response) error {
	got, err := readInto(bw, res.Body, res.ContentLength, x.timer)
	if err != nil {
		// Nothing has left for the client yet: it is told why with a
		// 502 instead of a response cut short.
		x.started, x.status = false, 0
		return fmt.Errorf("upstream response body cut short after %d of %d bytes: %w", got, res.ContentLength, err)
	}
	x.down += res.ContentLength
	x.finish()
	return bw.Flush()
}

// readInto reads exactly n bytes of src into bw's free space, behind what
// bw holds, with no copy buffer (after an idle spell the buffer pool is
// empty and a fresh 32 KiB buffer would be zeroed for a small body); n is
// at most bw.Available(). Each read marks timer's stream active, when
// given. It returns how much arrived; a short body is io.ErrUnexpectedEOF.
func readInto(bw *bufio.Writer, src io.Reader, n int64, timer *streamTimer) (int, error) {
	dst := bw.AvailableBuffer()[:n]
	got := 0
	for got < len(dst) {
		m, err := src.Read(dst[got:])
		if m > 0 {
			got += m
			if timer != nil {
				timer.touch()
			}
		}
		if err != nil && got < len(dst) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return got, err
		}
	}
	bw.Write(dst)
	return got, nil
}
