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
// Most answers come in microseconds, so the watch starts only after
// clientWatchDelay: it is a goroutine blocked in a MSG_PEEK on the client
// socket through the runtime's poller, which sees an orderly close (a
// zero-length peek) or a reset. Bytes from the client (a pipelined next
// request) end the watch without a verdict.
type clientWatch struct {
	cc    *clientConn
	timer *time.Timer // made once per connection
	gone  atomic.Bool // the client hung up during the last watch

	mu      sync.Mutex
	dl      *fastDeadlines // of the exchange being watched; abort ends it
	running sync.WaitGroup
	armed   bool
}

const clientWatchDelay = 10 * time.Millisecond

// errClientGone ends an exchange whose client hung up.
var errClientGone = errors.New("the client closed its connection before the response")

// start arms the watch for the exchange whose deadlines are dl.
func (w *clientWatch) start(dl *fastDeadlines) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gone.Store(false)
	w.dl, w.armed = dl, true
	if w.timer == nil {
		w.timer = time.AfterFunc(clientWatchDelay, w.watch)
	} else {
		w.timer.Reset(clientWatchDelay)
	}
}

// stop ends the watch; when it returns, the watch touches nothing.
func (w *clientWatch) stop() {
	w.mu.Lock()
	w.armed = false
	stopped := w.timer.Stop()
	w.mu.Unlock()
	if stopped {
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
	w.mu.Lock()
	if !w.armed || w.cc.raw == nil {
		w.mu.Unlock()
		return
	}
	w.running.Add(1)
	w.mu.Unlock()
	defer w.running.Done()
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
