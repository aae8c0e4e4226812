package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// clientWatch notices a client that hangs up while the fast path waits
// for the upstream's answer, and ends the exchange, as net/http's
// background read cancels a request whose client left: a long poll from a
// client that gave up must not hold its upstream connection until the
// upstream answers or the stream idle timeout passes.
//
// Most answers come in microseconds, so the watch starts only once the
// exchange has lasted clientWatchDelay, as the Server's clock (fastClock)
// finds: it is a goroutine blocked in a MSG_PEEK on the client socket
// through the runtime's poller, which sees an orderly close (a zero-length
// peek) or a reset. Bytes from the client (a pipelined next request) end
// the watch without a verdict.
type clientWatch struct {
	cc   *clientConn
	gone atomic.Bool // the client hung up during the last watch

	mu       sync.Mutex
	dl       *fastDeadlines // of the exchange being watched; abort ends it
	running  sync.WaitGroup
	armed    bool      // an exchange is in progress
	since    time.Time // when it started
	started  bool      // the watch of this exchange started
	watching bool      // and has not ended
}

// clientWatchDelay is how long an exchange lasts before it is watched; the
// clock adds up to fastTick.
const clientWatchDelay = 10 * time.Millisecond

// errClientGone ends an exchange whose client hung up.
var errClientGone = errors.New("the client closed its connection before the response")

// start arms the watch for the exchange whose deadlines are dl, waiting
// for the upstream since since (the caller's clock reading: the fast path
// reads the clock once per request here, for the stream timer too).
func (w *clientWatch) start(dl *fastDeadlines, since time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gone.Store(false)
	w.dl, w.armed, w.since, w.started = dl, true, since, false
}

// tick starts the watch once the exchange has lasted clientWatchDelay.
func (w *clientWatch) tick(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed || w.started || now.Sub(w.since) < clientWatchDelay || w.cc.raw == nil {
		return
	}
	w.started, w.watching = true, true
	w.running.Add(1)
	go w.watch()
}

// stop ends the watch; when it returns, the watch touches nothing.
func (w *clientWatch) stop() {
	w.mu.Lock()
	w.armed = false
	watching := w.watching
	w.mu.Unlock()
	if !watching {
		return
	}
	// The watch may be blocked on the socket: wake it, wait for it, and
	// lift the deadline that woke it.
	w.cc.UnixConn.SetReadDeadline(time.Unix(1, 0))
	w.running.Wait()
	w.cc.mu.Lock()
	w.cc.UnixConn.SetReadDeadline(w.cc.readDeadline())
	w.cc.mu.Unlock()
}

func (w *clientWatch) watch() {
	defer func() {
		w.mu.Lock()
		w.watching = false
		w.mu.Unlock()
		w.running.Done()
	}()
	hungUp := false
	err := w.cc.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == syscall.EAGAIN:
			return false // nothing yet: wait for the socket
		case errno != 0 || n == 0:
			hungUp = true // reset, or an orderly close
		}
		return true
	})
	if err != nil || !hungUp {
		return // woken by stop, or the client sent more
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed {
		w.gone.Store(true)
		w.dl.abort()
	}
}
