package wlapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// Resolver attests callers (*workload.Resolver).
type Resolver interface {
	Resolve(ctx context.Context, conn *net.UnixConn) (*workload.Identity, error)
	ResolvePID(ctx context.Context, pid int32) (*workload.Identity, error)
	Rematch(id *workload.Identity) (*workload.Identity, error)
	Generation() *registry.Registry
	ProviderDecides() bool
}

var _ Resolver = (*workload.Resolver)(nil)

// Options configure a Server. Resolver, Source and Alive are required.
type Options struct {
	Resolver Resolver
	// Source issues the X509-SVIDs and holds the bundles; when it
	// implements tlsconf.JWTSource the JWT RPCs use it.
	Source tlsconf.Source
	// Alive reports whether the process fp still runs the same image
	// ((*attest.Attestor).Alive).
	Alive func(attest.Fingerprint) bool
	// Poll is how often a stream looks for a rotated SVID or a changed
	// bundle. Default 1s.
	Poll time.Duration
	// AttestTimeout bounds a connection's attestation (with the SPIRE
	// provider, the wait for SPIRE's first answer). Default 30s.
	AttestTimeout time.Duration
	// MaxUnattestedPerUID bounds the open connections of one uid whose
	// process has no identity (THREATS F11); one over it is closed at the
	// handshake. Default 16; negative: no limit.
	MaxUnattestedPerUID int
	// MaxConcurrentStreams bounds the RPCs in flight on one connection.
	// Default 16 (go-spiffe's sources use one or two).
	MaxConcurrentStreams uint32
	// Allowed reports whether a process of identity id may use the
	// Workload API at all, which hands it its private key (config
	// listen.workload_api_ids; SetAllowed changes it live). Nil: every
	// identity may.
	Allowed func(id spiffeid.ID) bool
	// Observe, when set, is told of every RPC (rpc "connection": a
	// connection closed at the handshake) once it ends: its gRPC outcome
	// ("OK", "PermissionDenied", ...) and, when the caller got no
	// identity, why (the workload package's error, or a
	// *ForeignWriterError). For metrics (admin.Monitor.WorkloadAPI).
	Observe func(rpc, outcome string, refusal error)
	// Logger receives operational events. Default: no logging.
	Logger zerolog.Logger
	// Audit receives one line per RPC and per X509-SVID sent. Default: none.
	Audit zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.AttestTimeout <= 0 {
		o.AttestTimeout = 30 * time.Second
	}
	if o.MaxUnattestedPerUID == 0 {
		o.MaxUnattestedPerUID = 16
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 16
	}
	return o
}

// maxRequestBytes bounds a request message: the largest is a JWT-SVID to
// validate.
const maxRequestBytes = 64 << 10

// Server serves the SpiffeWorkloadAPI gRPC service.
type Server struct {
	workloadpb.UnimplementedSpiffeWorkloadAPIServer
	opts Options
	jwt  tlsconf.JWTSource // nil: the Source issues no JWT-SVIDs
	grpc *grpc.Server

	// ctx is cancelled by Shutdown: streams end with Unavailable.
	ctx    context.Context
	cancel context.CancelFunc

	allowed atomic.Pointer[func(spiffeid.ID) bool] // nil: every identity

	mu         sync.Mutex
	unattested map[uint32]int
}

// SetAllowed replaces Options.Allowed (a reload); RPCs and stream
// messages after it are judged by allowed.
func (s *Server) SetAllowed(allowed func(id spiffeid.ID) bool) {
	if allowed == nil {
		s.allowed.Store(nil)
		return
	}
	s.allowed.Store(&allowed)
}

// mayUse reports whether id may use the Workload API.
func (s *Server) mayUse(id spiffeid.ID) bool {
	f := s.allowed.Load()
	return f == nil || (*f)(id)
}

// New returns a Server; Serve serves it on a listener.
func New(opts Options) (*Server, error) {
	if opts.Resolver == nil || opts.Source == nil || opts.Alive == nil {
		return nil, errors.New("wlapi: Options.Resolver, Source and Alive are required")
	}
	opts = opts.withDefaults()
	s := &Server{opts: opts, unattested: make(map[uint32]int)}
	s.SetAllowed(opts.Allowed)
	s.jwt, _ = opts.Source.(tlsconf.JWTSource)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.grpc = grpc.NewServer(
		grpc.Creds(transportCreds{s: s}),
		grpc.ConnectionTimeout(opts.AttestTimeout+5*time.Second),
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
		// go-spiffe's client keeps its streams open for good; pings
		// from it are fine, floods are not.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	)
	workloadpb.RegisterSpiffeWorkloadAPIServer(s.grpc, s)
	return s, nil
}

// Serve serves l until Shutdown. l should have SO_PASSCRED set before any
// client could connect (proxy.Listen does): Serve sets it too, but bytes
// written before that carry no writer and fail their connection's reads.
func (s *Server) Serve(l net.Listener) error {
	if err := setPassCred(l); err != nil {
		return err
	}
	if err := s.grpc.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("wlapi: serve %s: %w", l.Addr(), err)
	}
	return nil
}

// Shutdown ends every stream (Unavailable: procmesh is shutting down),
// waits for RPCs in flight until ctx is done, then closes every
// connection. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
		return ctx.Err()
	}
}

// openUnattested counts a connection of uid without an identity, unless
// the uid holds MaxUnattestedPerUID already.
func (s *Server) openUnattested(uid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if max := s.opts.MaxUnattestedPerUID; max >= 0 && s.unattested[uid] >= max {
		return false
	}
	s.unattested[uid]++
	return true
}

func (s *Server) closeUnattested(uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unattested[uid]--; s.unattested[uid] <= 0 {
		delete(s.unattested, uid)
	}
}
