package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// Resolver tells which workload is on the other end of a Unix connection.
type Resolver interface {
	Resolve(ctx context.Context, conn *net.UnixConn) (*workload.Identity, error)
}

var _ Resolver = (*workload.Resolver)(nil)

// Options configure a Server. Resolver and Identities are required.
type Options struct {
	Resolver   Resolver
	Identities tlsconf.Source
	// Logger receives operational messages. Default: none.
	Logger zerolog.Logger
	// Audit receives one line per request and per connection. Default: none.
	Audit zerolog.Logger
	// Upstream tunes upstream connections; zero values take defaults.
	Upstream UpstreamOptions
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle this long.
	// Default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Default 60 KiB, as Envoy.
	MaxHeaderBytes int
}

// Server is the data plane. Build it with New, give it listeners with Serve
// and ServeRaw, swap its routes and policy with SetState, stop it with
// Shutdown.
type Server struct {
	opts  Options
	state atomic.Pointer[State]
	pools *pools
	http  *http.Server
	rp    *httputil.ReverseProxy
	conns tracker

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closing   bool
	serving   sync.WaitGroup
}

// New returns a Server with the given initial state.
func New(opts Options, st *State) (*Server, error) {
	if opts.Resolver == nil || opts.Identities == nil {
		return nil, errors.New("proxy: Options.Resolver and Options.Identities are required")
	}
	if st == nil {
		return nil, errors.New("proxy: a State is required")
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 10 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 60 << 10
	}
	s := &Server{opts: opts, listeners: make(map[net.Listener]struct{})}
	s.state.Store(st)
	s.pools = newPools(opts.Identities, opts.Upstream)
	s.rp = s.newReverseProxy()
	// HTTP/1.1 and prior-knowledge HTTP/2 cleartext share the main socket,
	// so gRPC clients with a unix: target work; the socket is local and
	// the identity comes from the kernel, so there is no TLS to negotiate.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Protocols:         protocols,
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    opts.MaxHeaderBytes,
		ConnContext:       s.attestOnAccept,
		ErrorLog:          newStdLogger(opts.Logger),
	}
	return s, nil
}

// State returns the routes and policy in force.
func (s *Server) State() *State { return s.state.Load() }

// SetState swaps routes and policy. Requests already past their policy
// check finish under the state they started with.
func (s *Server) SetState(st *State) {
	s.state.Store(st)
	s.pools.retain(st)
}

// Serve accepts HTTP forward-proxy connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if !s.track(l) {
		return http.ErrServerClosed
	}
	defer s.untrack(l)
	return s.http.Serve(l)
}

// ServeRaw accepts connections on l and splices each, as raw bytes, to the
// named route over mTLS, until Shutdown.
func (s *Server) ServeRaw(l net.Listener, route string) error {
	if _, ok := s.State().Route(route); !ok {
		return fmt.Errorf("proxy: no route named %q for raw socket %s", route, l.Addr())
	}
	if !s.track(l) {
		return http.ErrServerClosed
	}
	defer s.untrack(l)
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("proxy: accept on %s: %w", l.Addr(), err)
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
		}
		if !s.conns.add(uc) {
			uc.Close()
			continue
		}
		go func() {
			defer s.conns.done(uc)
			s.serveRaw(uc, route)
		}()
	}
}

func (s *Server) track(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.listeners[l] = struct{}{}
	s.serving.Add(1)
	return true
}

func (s *Server) untrack(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
	s.serving.Done()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Shutdown stops accepting, lets in-flight requests, tunnels and raw
// connections finish until ctx is done, then closes what is left and the
// upstream pools (THREATS F7). It returns ctx.Err() if work had to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.conns.closeIdle()
	httpErr := s.http.Shutdown(ctx)
	connErr := s.conns.wait(ctx)
	s.serving.Wait()
	s.pools.closeAll()
	return errors.Join(httpErr, connErr)
}
