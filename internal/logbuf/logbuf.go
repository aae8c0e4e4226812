// Package logbuf batches procmesh's JSON log and audit lines in memory and
// writes them to their destination in few write(2) calls: when the buffer
// is full, once per flush interval, and on Flush and Close. Every Write is
// one whole line (zerolog writes one event per call); a line is never split
// between two writes, so a reader of the file sees whole lines only.
// Lines at warn level and above are written at once, together with
// everything buffered before them.
//
// The price is durability: if the process dies without Close (a crash, an
// OOM kill, SIGKILL), the lines still in the buffer — at most one flush
// interval's worth — are lost. A flush interval of 0 writes every line at
// once, as an unbuffered writer does.
//
// It leaves out opening, rotating and closing the destination, which
// belong to the caller.
package logbuf

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// DefaultSize is the buffer size when Options.Size is 0: 64 KiB, like
// Envoy's access-log buffer, about 150 audit lines per write.
const DefaultSize = 64 << 10

// Options tune a Writer. The zero value writes every line at once.
type Options struct {
	// FlushInterval bounds how long a line waits in the buffer. 0 turns
	// buffering off: every line is written at once.
	FlushInterval time.Duration
	// Size is the buffer's capacity in bytes; 0 means DefaultSize. A line
	// longer than Size is written by itself, after what was buffered.
	Size int
	// OnError is told when writing a batch failed; the batch's lines are
	// dropped. It is called without the Writer's lock held; nil ignores
	// the errors. Writes of single lines (no buffering, urgent lines,
	// lines longer than Size) return their error to the caller instead.
	OnError func(error)
}

// Writer is a line-batching io.Writer, safe for concurrent use.
type Writer struct {
	dst      io.Writer
	interval time.Duration
	onError  func(error)

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer // flushes the buffer interval after its first line
	armed  bool        // timer is due to fire
	closed bool
	ticks  sync.WaitGroup // timer callbacks armed and not yet finished
}

// New returns a Writer that batches lines for dst.
func New(dst io.Writer, o Options) *Writer {
	w := &Writer{dst: dst, interval: o.FlushInterval, onError: o.OnError}
	if w.interval > 0 {
		size := o.Size
		if size <= 0 {
			size = DefaultSize
		}
		w.buf = make([]byte, 0, size)
	}
	return w
}

// Write buffers p, one whole line. A failed flush of earlier lines goes to
// OnError; p itself is kept.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed || w.interval <= 0 {
		defer w.mu.Unlock()
		return w.dst.Write(p)
	}
	var flushErr error
	if len(w.buf)+len(p) > cap(w.buf) {
		flushErr = w.flushLocked()
	}
	if len(p) > cap(w.buf) {
		defer w.mu.Unlock()
		w.report(flushErr)
		return w.dst.Write(p)
	}
	w.buf = append(w.buf, p...)
	w.armLocked()
	w.mu.Unlock()
	w.report(flushErr)
	return len(p), nil
}

// WriteNow writes what is buffered and then p, at once.
func (w *Writer) WriteNow(p []byte) (int, error) {
	w.mu.Lock()
	flushErr := w.flushLocked()
	n, err := w.dst.Write(p)
	w.mu.Unlock()
	w.report(flushErr)
	return n, err
}

// Flush writes what is buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

// Close flushes the buffer and stops the flush timer; later writes go
// straight to the destination. It does not close the destination. Close is
// idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	if w.armed && w.timer.Stop() {
		w.ticks.Done()
	}
	w.armed = false
	err := w.flushLocked()
	w.mu.Unlock()
	w.ticks.Wait()
	return err
}

// armLocked starts the flush timer if it is not already running: a line
// never waits longer than the interval, and an idle Writer has no timer.
func (w *Writer) armLocked() {
	if w.armed {
		return
	}
	w.armed = true
	w.ticks.Add(1)
	if w.timer == nil {
		w.timer = time.AfterFunc(w.interval, w.tick)
		return
	}
	w.timer.Reset(w.interval)
}

// tick is the flush timer's callback.
func (w *Writer) tick() {
	defer w.ticks.Done()
	w.mu.Lock()
	w.armed = false
	err := w.flushLocked()
	w.mu.Unlock()
	w.report(err)
}

// flushLocked writes the buffer in one call and empties it, whatever the
// result: lines that could not be written are dropped, not retried, so a
// full disk cannot make the buffer grow.
func (w *Writer) flushLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	n := len(w.buf)
	_, err := w.dst.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		return fmt.Errorf("logbuf: writing %d bytes of buffered log lines: %w", n, err)
	}
	return nil
}

func (w *Writer) report(err error) {
	if err != nil && w.onError != nil {
		w.onError(err)
	}
}
