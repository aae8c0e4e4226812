package inbound

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procmesh/procmesh/policy"
)

// listener is one running Listener.
type listener struct {
	srv *Server
	ln  net.Listener
	cfg atomic.Pointer[Listener]
	svc atomic.Pointer[service]

	http *http.Server  // protocol http1, http2
	hln  *chanListener // handshaken conns for http
	tr   atomic.Pointer[http.Transport]
	// conns maps each *tls.Conn handed to http to its *connInfo.
	conns sync.Map

	mu      sync.Mutex
	tcp     map[*tcpConn]struct{} // open tcp connections
	wg      sync.WaitGroup        // accept loop, handshakes, tcp connections
	closing atomic.Bool
	once    sync.Once
}

// open binds l's address; start serves it.
func (s *Server) open(l Listener) (*listener, error) {
	ln, err := net.Listen("tcp", l.Listen)
	if err != nil {
		return nil, err
	}
	nl := &listener{srv: s, ln: ln, tcp: map[*tcpConn]struct{}{}}
	nl.setConfig(l)
	if l.Protocol != "tcp" {
		nl.hln = newChanListener(ln.Addr())
		nl.http = s.newHTTPServer(nl)
	}
	return nl, nil
}

func (l *listener) setConfig(cfg Listener) {
	c := cfg
	l.cfg.Store(&c)
	o := l.srv.opts
	if old := l.svc.Load(); old == nil || old.path != c.Service || old.identity != c.Identity {
		l.svc.Store(&service{path: c.Service, identity: c.Identity, resolver: o.Resolver, pidfd: !o.DisablePIDFD,
			timeout: o.DialTimeout, ttl: o.ServiceCheckTTL, now: time.Now})
		if c.Protocol != "tcp" {
			if old := l.tr.Swap(l.srv.newTransport(l)); old != nil {
				old.CloseIdleConnections()
			}
		}
	}
}

// retune applies a changed config to a running listener of the same
// address and protocol, and closes tcp connections the new policy no
// longer allows (as egress does for tunnels, THREATS F6).
func (l *listener) retune(cfg Listener) {
	l.setConfig(cfg)
	l.mu.Lock()
	var gone []*tcpConn
	for c := range l.tcp {
		if !cfg.Policy.Decide(policy.Request{Source: c.peer.id, Route: cfg.Name, Connection: true}).Allow {
			gone = append(gone, c)
		}
	}
	l.mu.Unlock()
	for _, c := range gone {
		c.endByPolicy()
	}
}

// start serves l in the background.
func (l *listener) start() {
	l.srv.log.Info().Str("inbound", l.cfg.Load().Name).Str("listen", l.ln.Addr().String()).
		Str("service", l.cfg.Load().Service).Str("protocol", l.cfg.Load().Protocol).Msg("inbound listener serving")
	if l.http != nil {
		go l.http.Serve(l.hln)
	}
	l.wg.Add(1)
	go l.acceptLoop()
}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.srv.log.Warn().Err(err).Dur("retry_in", delay).Msg("inbound accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !l.srv.admit() {
			l.auditConn(nil, c.RemoteAddr(), errLimit("limits.max_connections"), time.Now())
			c.Close()
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.serveConn(c)
		}()
	}
}

// serveConn handshakes c and hands it to the protocol's server.
func (l *listener) serveConn(c net.Conn) {
	start := time.Now()
	tc, p, err := l.handshake(c)
	if err != nil {
		l.auditConn(p, c.RemoteAddr(), err, start)
		c.Close()
		l.srv.release()
		return
	}
	if !l.srv.admitID(p.id) {
		l.auditConn(p, c.RemoteAddr(), errLimit("limits.max_connections_per_identity"), start)
		tc.Close()
		l.srv.release()
		return
	}
	if l.http == nil {
		defer l.srv.release()
		defer l.srv.releaseID(p.id)
		l.serveTCP(tc, p, start)
		return
	}
	// net/http must see the *tls.Conn itself (h2 by ALPN, r.TLS);
	// ConnContext finds the caller, ConnState releases the counts.
	l.conns.Store(tc, &connInfo{peer: p, tls: tc})
	if !l.hln.push(tc) {
		l.conns.Delete(tc)
		tc.Close()
		l.srv.releaseID(p.id)
		l.srv.release()
	}
}

// closeListener stops accepting.
func (l *listener) closeListener() {
	l.once.Do(func() {
		l.closing.Store(true)
		l.ln.Close()
	})
}

// shutdown drains l for up to d.
func (l *listener) shutdown(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := l.drain(ctx); err != nil {
		l.srv.log.Warn().Err(err).Str("inbound", l.cfg.Load().Name).Msg("inbound listener removed; connections left at the drain deadline were closed")
	}
}

// drain stops accepting, lets requests and tcp connections finish until
// ctx is done, then closes the rest.
func (l *listener) drain(ctx context.Context) error {
	l.closeListener()
	var err error
	if l.http != nil {
		l.hln.Close()
		err = l.http.Shutdown(ctx)
		if err != nil {
			l.http.Close()
		}
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		l.mu.Lock()
		for c := range l.tcp {
			c.tls.Close()
		}
		l.mu.Unlock()
		<-done
		if err == nil {
			err = ctx.Err()
		}
	}
	if tr := l.tr.Load(); tr != nil {
		tr.CloseIdleConnections()
	}
	return err
}

// chanListener hands handshaken connections to http.Server.Serve.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (c *chanListener) push(conn net.Conn) bool {
	select {
	case c.ch <- conn:
		return true
	case <-c.done:
		return false
	}
}

func (c *chanListener) Accept() (net.Conn, error) {
	select {
	case conn := <-c.ch:
		return conn, nil
	case <-c.done:
		return nil, net.ErrClosed
	}
}

func (c *chanListener) Close() error {
	c.once.Do(func() { close(c.done) })
	return nil
}

func (c *chanListener) Addr() net.Addr { return c.addr }
