package proxy

import (
	"net"
	"sync"
)

// handoffListener feeds net/http the client connections the HTTP/1.1 fast
// path does not serve itself (h1fast.go): HTTP/2 cleartext, CONNECT,
// upgrades, HTTP/1.0, chunked request bodies, routes that are not http1,
// and every refusal. net/http serves such a connection from the request
// that was handed over to its end; what the fast path had already read is
// replayed to it first (clientConn.replay).
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newHandoffListener() *handoffListener {
	return &handoffListener{addr: handoffAddr{}, conns: make(chan net.Conn), done: make(chan struct{})}
}

// hand gives c to net/http; it reports false once the listener is closed
// (the server is shutting down), and the caller then closes c.
func (l *handoffListener) hand(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "unix" }
func (handoffAddr) String() string  { return "procmesh-handoff" }
