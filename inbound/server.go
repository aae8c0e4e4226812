package inbound

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/internal/rawio"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/tlsconf"
)

// Listener is one inbound item of the config.
type Listener struct {
	Name     string // the policy's route name; in audit lines as "inbound"
	Listen   string // TCP host:port
	Service  string // the local service's Unix socket
	Protocol string // "tcp", "http1" or "http2"
	Identity spiffeid.ID
	Policy   *policy.Policy
	// PassIdentity is "xfcc" (HTTP), "proxy-v2" (tcp) or "none".
	PassIdentity string
}

// Options configure a Server.
type Options struct {
	Source   tlsconf.Source // SVIDs to present, bundles to verify callers
	Resolver Resolver       // attests serving processes
	// Limits are the egress limits, applied to inbound connections too
	// (THREATS N4); zero fields take proxy's defaults.
	Limits proxy.Limits
	// DialTimeout bounds connecting to a service and attesting it.
	// Default 10s (upstream.connect_timeout).
	DialTimeout time.Duration
	// Idle connections to an HTTP service: how many per listener, for how
	// long. Defaults 64 and 90s (upstream.max_idle_per_pool, idle_timeout).
	MaxIdlePerService  int
	ServiceIdleTimeout time.Duration
	// ResponseHeaderTimeout bounds a service's wait before its response
	// headers; 0 = none. MaxResponseHeaderBytes bounds their size; default
	// 60 KiB.
	ResponseHeaderTimeout  time.Duration
	MaxResponseHeaderBytes int
	// RequestHeadersToRemove are removed from every request, besides
	// X-Forwarded-Client-Cert, which is always removed (THREATS N2, P9).
	RequestHeadersToRemove []string
	// ServiceCheckTTL is how long the handshake reuses the verdict on a
	// listening socket; every connection to the service is attested
	// anyway. Default 1s.
	ServiceCheckTTL time.Duration
	// CopyBufferSize is the buffer of each tcp copy direction and of each
	// HTTP body copy, taken from a pool; default 32 KiB.
	CopyBufferSize int
	// DisablePIDFD ignores SO_PEERPIDFD.
	DisablePIDFD bool
	Logger       zerolog.Logger
	Audit        zerolog.Logger
	// Observe, when set, is told of every audit line: its kind
	// ("inbound_handshake", "inbound_request", "inbound_connection"), the
	// listener, the decision ("allow", "deny", "audit") and the HTTP status
	// (0 when none). For metrics (admin.Monitor.Inbound).
	Observe func(kind, listener, decision string, status int)
}

// Server serves the inbound listeners. It is safe for concurrent use.
type Server struct {
	opts Options
	log  zerolog.Logger

	mu        sync.Mutex
	listeners map[string]*listener
	closed    bool

	bufs httputil.BufferPool // copy buffers: HTTP bodies, tcp streams

	conns atomic.Int64 // all inbound client connections
	idMu  sync.Mutex
	perID map[spiffeid.ID]int
}

// New returns a Server with no listeners; Apply adds them.
func New(opts Options) (*Server, error) {
	if opts.Source == nil || opts.Resolver == nil {
		return nil, errors.New("inbound: a Source and a Resolver are required")
	}
	opts.Limits = opts.Limits.WithDefaults()
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.MaxIdlePerService <= 0 {
		opts.MaxIdlePerService = 64
	}
	if opts.ServiceIdleTimeout <= 0 {
		opts.ServiceIdleTimeout = 90 * time.Second
	}
	if opts.MaxResponseHeaderBytes <= 0 {
		opts.MaxResponseHeaderBytes = 60 << 10
	}
	if opts.ServiceCheckTTL <= 0 {
		opts.ServiceCheckTTL = time.Second
	}
	return &Server{opts: opts, log: opts.Logger, listeners: map[string]*listener{}, perID: map[spiffeid.ID]int{},
		bufs: proxy.NewCopyBufferPool(opts.CopyBufferSize)}, nil
}

// Apply makes the running listeners those of ls: new names are opened,
// missing ones are closed (their connections drain, up to drain), and a
// changed one is retuned in place (identity, service, policy,
// pass_identity) or, when its address or protocol changed, closed and
// opened again. Open tcp connections that the new policy no longer allows
// are closed. All new listeners are opened before anything else changes:
// an address that cannot be bound fails the whole Apply (a listener whose
// address a new one was to take over stays closed then).
func (s *Server) Apply(ls []Listener, drain time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("inbound: server is shut down")
	}
	want := map[string]Listener{}
	for _, l := range ls {
		want[l.Name] = l
	}
	var stop []*listener
	opened := map[string]*listener{}
	// Addresses held by listeners that go away or are reopened: a new
	// listener on one (a renamed item, a changed protocol) takes it over
	// once the old one lets go of the port (its connections drain below).
	leaving := map[string]*listener{}
	for name, old := range s.listeners {
		c := old.cfg.Load()
		if w, keep := want[name]; !keep || w.Listen != c.Listen || w.Protocol != c.Protocol {
			leaving[c.Listen] = old
		}
	}
	for _, l := range ls {
		old := s.listeners[l.Name]
		if old != nil && old.cfg.Load().Listen == l.Listen && old.cfg.Load().Protocol == l.Protocol {
			continue
		}
		if o := leaving[l.Listen]; o != nil {
			o.closeListener()
		}
		nl, err := s.open(l)
		if err != nil {
			for _, o := range opened {
				o.closeListener()
			}
			return fmt.Errorf("inbound %q: %w", l.Name, err)
		}
		opened[l.Name] = nl
	}
	for name, old := range s.listeners {
		if _, keep := want[name]; !keep || opened[name] != nil {
			stop = append(stop, old)
			delete(s.listeners, name)
		}
	}
	for _, l := range ls {
		if nl := opened[l.Name]; nl != nil {
			s.listeners[l.Name] = nl
			nl.start()
			continue
		}
		s.listeners[l.Name].retune(l)
	}
	for _, old := range stop {
		// The address stops accepting before Apply returns; what was
		// accepted drains in the background.
		old.closeListener()
		go old.shutdown(drain)
	}
	return nil
}

// Addr returns the address listener name is bound to, nil if none.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[name]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// Shutdown stops accepting on every listener and waits for their
// connections to finish until ctx is done, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	all := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		all = append(all, l)
	}
	s.listeners = map[string]*listener{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, l := range all {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = l.drain(ctx) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// admit counts a client connection against limits.max_connections.
func (s *Server) admit() bool {
	max := s.opts.Limits.MaxConnections
	if n := s.conns.Add(1); max > 0 && n > int64(max) {
		s.conns.Add(-1)
		return false
	}
	return true
}

func (s *Server) release() { s.conns.Add(-1) }

// admitID counts a connection of id against
// limits.max_connections_per_identity.
func (s *Server) admitID(id spiffeid.ID) bool {
	max := s.opts.Limits.MaxConnectionsPerIdentity
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if max > 0 && s.perID[id] >= max {
		return false
	}
	s.perID[id]++
	return true
}

func (s *Server) releaseID(id spiffeid.ID) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.perID[id]--; s.perID[id] <= 0 {
		delete(s.perID, id)
	}
}

// peer is a verified caller.
type peer struct {
	id   spiffeid.ID
	hash string // sha256 hex of its leaf certificate's DER
	addr net.Addr
}

// handshake runs the TLS handshake of c as listener l: the certificate is
// presented only once the service's serving process has been checked, and
// the caller must present an X509-SVID the bundles verify, of an ID the
// policy could allow.
func (l *listener) handshake(c net.Conn) (*tls.Conn, *peer, error) {
	s := l.srv
	cfg := l.cfg.Load()
	var p peer
	p.addr = c.RemoteAddr()
	svc := l.svc.Load()
	svidSrc := tlsconf.SVIDSourceFor(s.opts.Source, tlsconf.Workload{ID: cfg.Identity})
	authorize := func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		p.id = id
		if len(chains) > 0 && len(chains[0]) > 0 {
			sum := sha256.Sum256(chains[0][0].Raw)
			p.hash = hex.EncodeToString(sum[:])
		}
		if !cfg.Policy.MayAllow(id, cfg.Name) {
			return fmt.Errorf("no rule of inbound %q's policy allows %s", cfg.Name, id)
		}
		return nil
	}
	var svcErr error
	tc := tlsconfig.MTLSServerConfig(serviceChecked{svidSrc, svc, l, &svcErr}, s.opts.Source.Bundles(), authorize)
	tc.MinVersion, tc.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	tc.SessionTicketsDisabled = true
	switch cfg.Protocol {
	case "http2":
		tc.NextProtos = []string{"h2", "http/1.1"}
	case "http1":
		tc.NextProtos = []string{"http/1.1"}
	}
	tlsConn := tls.Server(rawio.Wrap(c), tc)
	ctx := context.Background()
	if d := s.opts.Limits.ReadHeaderTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		if svcErr != nil {
			return nil, &p, svcErr
		}
		return nil, &p, err
	}
	return tlsConn, &p, nil
}

// serviceChecked presents the listener's SVID only after the service's
// serving process was found to be the listener's identity (THREATS N3).
type serviceChecked struct {
	x509svid.Source
	svc *service
	l   *listener
	err *error
}

func (s serviceChecked) GetX509SVID() (*x509svid.SVID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.l.srv.opts.DialTimeout)
	defer cancel()
	if err := s.svc.check(ctx); err != nil {
		*s.err = err
		return nil, err
	}
	return s.Source.GetX509SVID()
}
