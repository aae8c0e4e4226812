package proxy

import (
	"context"
	"net"
	"sync"
)

// tracker holds the connections the proxy owns outside net/http (CONNECT
// tunnels, WebSockets and raw-socket connections) so shutdown and reload
// can drain or close them.
type tracker struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// add registers c; it reports false once the tracker is draining.
func (t *tracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *tracker) done(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// closeIdle stops new registrations. Live connections carry on.
func (t *tracker) closeIdle() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

// wait waits for every tracked connection to finish; when ctx ends first it
// closes them all and returns ctx.Err().
func (t *tracker) wait(ctx context.Context) error {
	finished := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		t.closeAll()
		<-finished
		return ctx.Err()
	}
}

// closeAll closes every tracked connection. It closes them outside the
// lock: closing a clientConn calls done.
func (t *tracker) closeAll() {
	t.mu.Lock()
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
