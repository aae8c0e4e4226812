package proxy

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// countingReader counts request body bytes sent upstream, marks the stream
// active, enforces MaxRequestBodyBytes and remembers how the body ended.
// The transport reads it on its own goroutine.
type countingReader struct {
	r     io.ReadCloser
	timer *streamTimer
	limit int64
	n     atomic.Int64
	// reading is set while a Read waits on the client, stalled when the
	// stream timer ended such a Read: the client's fault (408), where an
	// idle stream is otherwise the upstream's (504).
	reading, stalled atomic.Bool

	mu  sync.Mutex
	err error // first error but io.EOF
	eof bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.limit > 0 {
		// Read at most one byte past the limit: enough to tell it was passed.
		if left := c.limit - c.n.Load(); int64(len(p)) > left+1 {
			p = p[:left+1]
		}
	}
	c.reading.Store(true)
	n, err := c.r.Read(p)
	c.reading.Store(false)
	if n > 0 {
		c.timer.touch()
		if total := c.n.Add(int64(n)); c.limit > 0 && total > c.limit {
			n -= int(total - c.limit)
			c.n.Store(c.limit)
			err = bodyTooLarge(c.limit)
		}
	}
	if err != nil && c.timer.cause.Load() != nil {
		c.stalled.Store(true)
	}
	if err != nil {
		c.mu.Lock()
		if errors.Is(err, io.EOF) {
			c.eof = true
		} else if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// reset readies a reused reader for another request's body.
func (c *countingReader) reset(r io.ReadCloser, timer *streamTimer, limit int64) {
	c.r, c.timer, c.limit = r, timer, limit
	c.n.Store(0)
	c.reading.Store(false)
	c.stalled.Store(false)
	c.mu.Lock()
	c.err, c.eof = nil, false
	c.mu.Unlock()
}

// failure is the error the client's body ended with, if any.
func (c *countingReader) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// waiting reports that the stream waits on the client's body.
func (c *countingReader) waiting() bool { return c.reading.Load() || c.stalled.Load() }

// countingWriter counts response bytes, marks the stream active and
// records the status; Unwrap lets http.ResponseController reach Flush and
// Hijack underneath.
type countingWriter struct {
	http.ResponseWriter
	timer  *streamTimer
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	if n > 0 {
		c.timer.touch()
	}
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
