package echo

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Mode selects what the server speaks after the TLS handshake.
type Mode string

// Modes.
const (
	ModeHTTP Mode = "http"
	ModeTCP  Mode = "tcp"
)

// handshakeTimeout bounds the TLS handshake and, in HTTP mode, reading the
// request header.
const handshakeTimeout = 10 * time.Second

// Options configures a Server.
type Options struct {
	// Addr is the TCP address to listen on. Default "127.0.0.1:0".
	Addr string
	// SVID is the server's own X509-SVID, asked at every handshake. Required.
	SVID x509svid.Source
	// Bundles verify client X509-SVIDs. Required.
	Bundles x509bundle.Source
	// Authorizer decides on the verified client ID. Default: any ID that
	// verified against Bundles.
	Authorizer tlsconfig.Authorizer
	// Mode is ModeHTTP (default) or ModeTCP.
	Mode Mode
	// DisableHTTP2 makes the HTTP mode's TLS listener offer http/1.1 only.
	// Default: h2 and http/1.1, chosen by ALPN.
	DisableHTTP2 bool
	// HTTP3 also serves HTTP mode over QUIC (ALPN h3) on UDP, at the same
	// host and port as the TCP listener. Default: off.
	HTTP3 bool
	// AdvertiseHTTP3 adds `Alt-Svc: h3=":PORT"; ma=86400` to every answer,
	// PORT being the TCP listener's (and, with HTTP3, the UDP one's).
	// Without HTTP3 it advertises an endpoint nobody serves, which is how
	// tests see a client fall back. SetAltSvc overrides it. Default: off.
	AdvertiseHTTP3 bool
	// Logger receives one debug line per request or connection and
	// handshake failures. Default: no logging.
	Logger zerolog.Logger
}

// Record is what the server saw of one HTTP request or one TCP connection.
type Record struct {
	SPIFFEID   spiffeid.ID // verified client SPIFFE ID
	ConnID     uint64      // the TLS (or QUIC) connection it arrived on, counting from 1
	RemoteAddr string
	Resumed    bool // the TLS session was resumed: no certificate was sent on this connection
	Method     string
	Path       string
	Host       string
	Proto      string // "HTTP/1.1", "HTTP/2.0", "HTTP/3.0", or "tcp" in TCP mode
	Header     map[string][]string
	BodyLen    int64
}

// Server is an mTLS echo upstream. Create it with New, then Start.
type Server struct {
	opts     Options
	nextConn atomic.Uint64

	mu      sync.Mutex
	started bool
	closed  bool
	addr    string
	ln      net.Listener
	httpSrv *http.Server
	conns   map[net.Conn]struct{} // TCP mode
	records []Record
	altSvc  string
	h3      *h3Server // HTTP3 only

	closing   chan struct{} // closed when Close starts
	serveDone chan struct{} // closed when the serving goroutine returns
	connWG    sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Server for opts; nothing listens before Start.
func New(opts Options) *Server {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Mode == "" {
		opts.Mode = ModeHTTP
	}
	if opts.Authorizer == nil {
		opts.Authorizer = tlsconfig.AuthorizeAny()
	}
	return &Server{opts: opts, conns: make(map[net.Conn]struct{}), closing: make(chan struct{}), serveDone: make(chan struct{})}
}

// Start listens and serves in the background.
func (s *Server) Start() error {
	switch {
	case s.opts.SVID == nil:
		return errors.New("echo: an SVID source is required")
	case s.opts.Bundles == nil:
		return errors.New("echo: a bundle source is required")
	case s.opts.Mode != ModeHTTP && s.opts.Mode != ModeTCP:
		return fmt.Errorf("echo: unknown mode %q (want %q or %q)", s.opts.Mode, ModeHTTP, ModeTCP)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("echo: server closed")
	case s.started:
		return errors.New("echo: server already started")
	}
	cfg := tlsconfig.MTLSServerConfig(s.opts.SVID, s.opts.Bundles, s.opts.Authorizer)
	cfg.MinVersion = tls.VersionTLS13
	if s.opts.Mode == ModeHTTP {
		cfg.NextProtos = []string{"h2", "http/1.1"}
		if s.opts.DisableHTTP2 {
			cfg.NextProtos = []string{"http/1.1"}
		}
	}
	ln, h3, err := s.listen(cfg)
	if err != nil {
		return err
	}
	s.started, s.ln, s.addr, s.h3 = true, tls.NewListener(ln, cfg), ln.Addr().String(), h3
	if s.opts.AdvertiseHTTP3 {
		s.altSvc = fmt.Sprintf(`h3=":%d"; ma=86400`, ln.Addr().(*net.TCPAddr).Port)
	}
	if s.opts.Mode == ModeHTTP {
		s.httpSrv = s.newHTTPServer()
		go func() {
			defer close(s.serveDone)
			// Serve returns http.ErrServerClosed after Close.
			_ = s.httpSrv.Serve(s.ln)
		}()
	} else {
		go func() {
			defer close(s.serveDone)
			s.acceptTCP(s.ln)
		}()
	}
	s.opts.Logger.Info().Str("addr", s.addr).Str("mode", string(s.opts.Mode)).Msg("echo server listening")
	return nil
}

// listen opens the TCP listener and, with HTTP3, the UDP one on the same
// port. When the port was left to the system and is taken on UDP, it tries
// again a few times.
func (s *Server) listen(cfg *tls.Config) (net.Listener, *h3Server, error) {
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", s.opts.Addr)
		if err != nil {
			return nil, nil, fmt.Errorf("echo: listen: %w", err)
		}
		if !s.opts.HTTP3 || s.opts.Mode != ModeHTTP {
			return ln, nil, nil
		}
		h3, err := s.startHTTP3(ln.Addr().(*net.TCPAddr), cfg)
		if err == nil {
			return ln, h3, nil
		}
		ln.Close()
		if _, port, _ := net.SplitHostPort(s.opts.Addr); port != "0" || attempt == 4 {
			return nil, nil, err
		}
	}
}

// StopHTTP3 stops serving HTTP/3, closing its QUIC connections, and keeps
// serving TCP: how tests see a client lose its HTTP/3 upstream.
func (s *Server) StopHTTP3() {
	s.mu.Lock()
	h3 := s.h3
	s.h3 = nil
	s.mu.Unlock()
	if h3 != nil {
		h3.close()
	}
}

// SetAltSvc sets the Alt-Svc header of later answers; "" sends none.
func (s *Server) SetAltSvc(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.altSvc = v
}

func (s *Server) altSvcValue() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.altSvc
}

// Addr returns the address the server listens on, "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Records returns a copy of what the server saw, in arrival order.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, len(s.records))
	copy(out, s.records)
	return out
}

func (s *Server) record(r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, r)
}

// Close stops listening, closes every connection and waits for all of the
// server's goroutines. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		started := s.started
		s.mu.Unlock()
		close(s.closing)
		if !started {
			return
		}
		s.StopHTTP3()
		if s.httpSrv != nil {
			_ = s.httpSrv.Close()
		} else {
			_ = s.ln.Close()
		}
		<-s.serveDone
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.connWG.Wait()
	})
	return nil
}

// peerID returns the verified client SPIFFE ID of a TLS connection.
func peerID(cs tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("echo: no client certificate")
	}
	return x509svid.IDFromCert(cs.PeerCertificates[0])
}
