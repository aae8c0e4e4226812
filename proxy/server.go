package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/proxy/internal/defaults"
	"github.com/procmesh/procmesh/proxy/internal/framing"
	"github.com/procmesh/procmesh/proxy/internal/upstream"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// Resolver tells which workload is on the other end of a Unix connection.
type Resolver interface {
	Resolve(ctx context.Context, conn *net.UnixConn) (*workload.Identity, error)
	// ResolvePID attests a process that wrote on a connection it did not
	// make (Options.AttestForeignWriters).
	ResolvePID(ctx context.Context, pid int32) (*workload.Identity, error)
	// Rematch re-checks an identity against the entries in force now.
	Rematch(id *workload.Identity) (*workload.Identity, error)
	// Generation changes whenever the entries do.
	Generation() *registry.Registry
}

var _ Resolver = (*workload.Resolver)(nil)

// Options configure a Server. The zero value of every field is usable:
// each states its default.
type Options struct {
	// Logger receives operational messages. Default: none.
	Logger zerolog.Logger
	// Audit receives one line per request and per connection. Default: none.
	Audit zerolog.Logger
	// Observer, when set, is told of every request and connection, once,
	// as its audit line is written (metrics, the status page). Default: none.
	Observer Observer
	// Upstream tunes upstream connections; zero values take defaults.
	Upstream UpstreamOptions
	// CopyBufferSize is the buffer for copying tunnels, raw sockets and
	// HTTP bodies. Default DefaultCopyBufferSize (32 KiB). A tunnel or raw
	// socket that keeps filling it moves to one four times larger (at
	// most 1 MiB) while it does (copyHalf).
	CopyBufferSize int
	// AttestForeignWriters attests a request whose bytes another process
	// than the connecting one wrote as that process, instead of refusing
	// it (attest.foreign_writer: attest; HTTP/1.1 requests only: bytes in
	// a tunnel, an h2c connection or on a raw socket must come from the
	// writer that opened it). Default false: refused (THREATS I12).
	AttestForeignWriters bool
	// Limits bound headers, time, streams, connections and bodies; zero
	// values take Envoy-like defaults (see Limits).
	Limits
	// RequestHeadersToRemove names request fields a client may send but
	// the upstream never receives (THREATS P9), on every path; names are
	// case-insensitive. nil: DefaultRequestHeadersToRemove; an empty list
	// removes none but the hop-by-hop, framing, Forwarded and
	// X-Forwarded-* fields, which are always removed. YAML
	// upstream.request_headers_to_remove; Envoy's route
	// request_headers_to_remove.
	RequestHeadersToRemove []string
}

// Server is the data plane. Build it with New, give it listeners with Serve
// and ServeRaw, swap its routes and policy with SetState, stop it with
// Shutdown.
type Server struct {
	opts     Options
	resolver Resolver
	state    atomic.Pointer[State]
	pools    *upstream.Pools
	http     *http.Server
	rp       *httputil.ReverseProxy
	conns    connSet[net.Conn]  // hijacked connections: tunnels, WebSockets, raw sockets
	live     connSet[*liveConn] // tunnels, raw connections and forwarded requests, re-decided on reload
	bufs     *bufferPool        // copy buffers
	bulk     *bufferPool        // copy buffers of bulk transfers, 4x bufs; tunnels' TLS batches
	// overLimit is what the scanner answers a head over the header limits,
	// naming their keys.
	overLimit framing.OverLimit
	// scanBufs are the HTTP/1.1 scanner's read buffers, held only while a
	// request head is being read, so an idle connection holds none.
	scanBufs *bufferPool
	counts   connCounts // open client connections, for the limits
	// reqFilter: the request fields not forwarded as sent.
	reqFilter *requestFilter
	// jwt: the JWT-SVIDs attached on routes with a JWTAudience (jwt.go).
	jwt *jwtCache

	// The HTTP/1.1 fast path (h1fast.go): its connections, its pooled
	// request readers and response writers, and the listener through
	// which it hands connections to net/http.
	fast        connSet[*fastConn]
	readers     *ioPool[*bufio.Reader, io.Reader]
	writers     *ioPool[*bufio.Writer, io.Writer]
	exchanges   sync.Pool // *fastExchange
	handoff     *handoffListener
	handoffOnce sync.Once
	clock       fastClock // the fast path's deadlines
	stats       stats

	// base is the root of the contexts of attestations and upstream work
	// that no request owns; Shutdown cancels it once draining is over.
	base       context.Context
	cancelBase context.CancelFunc

	// listeners being served; Shutdown closes them and waits for their
	// accept loops to end.
	listeners connSet[net.Listener]
}

// New returns a Server that attests callers with r, takes their SVIDs
// from ids and serves st's routes and policy until SetState.
func New(r Resolver, ids tlsconf.Source, st *State, opts Options) (*Server, error) {
	if r == nil || ids == nil || st == nil {
		return nil, errors.New("proxy: New needs a Resolver, an SVID source and a State")
	}
	opts.Limits = opts.Limits.withDefaults()
	s := &Server{opts: opts, resolver: r, bufs: newBufferPool(opts.CopyBufferSize), bulk: newBufferPool(bulkSize(opts.CopyBufferSize)), scanBufs: newBufferPool(scanBufSize),
		handoff: newHandoffListener(), readers: newReaderPool(fastReaderSize), writers: newWriterPool(fastWriterSize)}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.clock.s = s
	s.overLimit = framing.OverLimit{
		HeadBytes: headerBytesError(0, opts.MaxRequestHeaderBytes).Error(),
		Fields:    headerCountError(opts.MaxRequestHeaders).Error(),
	}
	s.state.Store(st)
	s.reqFilter = newRequestFilter(opts.RequestHeadersToRemove)
	jwtSrc, _ := ids.(tlsconf.JWTSource)
	s.jwt = newJWTCache(jwtSrc, s.base, opts.Logger)
	s.pools = upstream.NewPools(ids, opts.Upstream, opts.Logger) // auto's protocol switches and fallbacks
	s.rp = s.newReverseProxy()
	// HTTP/1.1 and prior-knowledge HTTP/2 cleartext share the main socket,
	// so gRPC clients with a unix: target work; the socket is local and
	// the identity comes from the kernel, so there is no TLS to negotiate.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Protocols: protocols,
		Handler:   http.HandlerFunc(s.serveHTTP),
		// The h1Scanner enforces the header limits of HTTP/1.1 requests
		// exactly, and the handler those of HTTP/2 ones; net/http's own
		// bound is a backstop above them, so that requests over the limit
		// reach procmesh and are refused with a message naming it.
		MaxHeaderBytes: 2 * opts.MaxRequestHeaderBytes,
		HTTP2:          framing.H2ServerConfig(opts.MaxConcurrentStreams),
		ConnContext:    s.connContext,
		ConnState:      s.connState,
		ErrorLog:       newStdLogger(opts.Logger),
	}
	if defaults.On(opts.ReadHeaderTimeout) {
		s.http.ReadHeaderTimeout = opts.ReadHeaderTimeout
	}
	if defaults.On(opts.IdleTimeout) {
		s.http.IdleTimeout = opts.IdleTimeout
	}
	return s, nil
}

// State returns the routes and policy in force.
func (s *Server) State() *State { return s.state.Load() }

// SetState swaps routes and policy. Requests already past their policy
// check finish under the state they started with.
func (s *Server) SetState(st *State) {
	s.state.Store(st)
	s.revalidate(st)
}

// Serve accepts HTTP forward-proxy connections on l until Shutdown.
// HTTP/1.1 requests take the fast path (h1fast.go); a connection it does
// not serve is handed to net/http.
func (s *Server) Serve(l net.Listener) error {
	if err := passCred(l); err != nil {
		return err
	}
	if !s.listeners.add(l) {
		return http.ErrServerClosed
	}
	defer s.listeners.remove(l)
	s.handoffOnce.Do(func() {
		go s.http.Serve(s.handoff)
	})
	return s.acceptLoop(l, func(c net.Conn) {
		uconn, ok := c.(*net.UnixConn)
		if !ok {
			// Refused at its first request: not a Unix socket.
			if !s.handoff.hand(c) {
				c.Close()
			}
			return
		}
		go s.serveFast(s.newClientConn(uconn, true))
	})
}

// connContext is net/http's ConnContext hook: it makes the clientConn
// reachable from requests and carries its attestation, started at accept.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	cc, ok := c.(*clientConn)
	if !ok {
		return context.WithValue(ctx, connIdentityKey{}, s.startAttest(ctx, c))
	}
	if cc.ident == nil {
		cc.ident = s.startAttest(ctx, cc.UnixConn)
	}
	ctx = context.WithValue(ctx, clientConnKey{}, cc)
	return context.WithValue(ctx, connIdentityKey{}, cc.ident)
}

// ServeRaw accepts connections on l and splices each, as raw bytes, to the
// named route over mTLS, until Shutdown.
func (s *Server) ServeRaw(l net.Listener, route string) error {
	if _, ok := s.State().Route(route); !ok {
		return fmt.Errorf("proxy: no route named %q for raw socket %s", route, l.Addr())
	}
	if err := passCred(l); err != nil {
		return err
	}
	if !s.listeners.add(l) {
		return http.ErrServerClosed
	}
	defer s.listeners.remove(l)
	return s.acceptLoop(l, func(c net.Conn) {
		uconn, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return
		}
		cc := s.newClientConn(uconn, false)
		if !s.conns.add(cc) {
			cc.Close()
			return
		}
		cc.tracked.Store(true)
		go func() {
			defer cc.Close()
			s.serveRaw(cc, route)
		}()
	})
}

// acceptLoop accepts connections on l and gives each to serve, until
// Shutdown. Running out of descriptors or memory (F9) is waited out with a
// backoff, as net/http does; the connections wait in the listen backlog.
func (s *Server) acceptLoop(l net.Listener, serve func(net.Conn)) error {
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.listeners.stopping() {
				return http.ErrServerClosed
			}
			if !isTemporary(err) {
				return fmt.Errorf("proxy: accept on %s: %w", l.Addr(), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.opts.Logger.Warn().Err(err).Str("socket", socketName(l)).Dur("retry_in", backoff).Msg("accept failed; retrying")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		serve(c)
	}
}

// socketName names a listener by its socket path: a Socket's address is
// the private path it was bound at before being moved into place.
func socketName(l net.Listener) string {
	if sk, ok := l.(*Socket); ok {
		return sk.Path()
	}
	return l.Addr().String()
}

// isTemporary reports accept errors worth retrying: timeouts, and running
// out of descriptors, buffers or memory.
func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Shutdown stops accepting, lets in-flight requests, tunnels and raw
// connections finish until ctx is done, then closes what is left and the
// upstream pools (THREATS F7). It returns ctx.Err() if work had to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.listeners.stopAdding()
	s.listeners.each(func(l net.Listener) { l.Close() })
	s.conns.stopAdding()
	fastErr := s.shutdownFast(ctx)
	s.clock.stop()
	s.handoff.Close()
	httpErr := s.http.Shutdown(ctx)
	connErr := s.conns.wait(ctx, func(c net.Conn) { c.Close() })
	s.listeners.wait(context.Background(), nil) // each accept loop ends with its closed listener
	s.cancelBase()
	s.pools.CloseAll()
	return errors.Join(fastErr, httpErr, connErr)
}
