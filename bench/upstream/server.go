package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Options say where to listen. An empty address turns that listener off;
// ":0"-style addresses pick a free port (see Server.Addrs).
type Options struct {
	Identity Identity
	H1, H2   string // TCP addresses
	H3       string // UDP address
	L4       string // TCP address
	Stats    string // plain HTTP on loopback: GET /stats
	BodySize int    // response body, default 1024
	// IdleTimeout closes idle client connections. Default 5 minutes, longer
	// than any scenario, so that idle-connection memory is measured with the
	// proxies' own timeouts, not ours.
	IdleTimeout time.Duration
}

// Addrs are the addresses actually listened on.
type Addrs struct {
	H1    string `json:"h1,omitempty"`
	H2    string `json:"h2,omitempty"`
	H3    string `json:"h3,omitempty"`
	L4    string `json:"l4,omitempty"`
	Stats string `json:"stats,omitempty"`
}

// Server is the running upstream.
type Server struct {
	Stats *Stats
	addrs Addrs
	opts  Options

	closers []func() error
	wg      sync.WaitGroup
	once    sync.Once
}

// Start listens on every configured address and serves in the background.
func Start(opts Options) (*Server, error) {
	if opts.BodySize <= 0 {
		opts.BodySize = 1024
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 5 * time.Minute
	}
	s := &Server{Stats: NewStats(), opts: opts}
	steps := []struct {
		addr  string
		start func(string) (string, error)
		into  *string
	}{
		{opts.H1, s.startH1, &s.addrs.H1},
		{opts.H2, s.startH2, &s.addrs.H2},
		{opts.H3, s.startH3, &s.addrs.H3},
		{opts.L4, s.startL4, &s.addrs.L4},
		{opts.Stats, s.startStats, &s.addrs.Stats},
	}
	for _, st := range steps {
		if st.addr == "" {
			continue
		}
		a, err := st.start(st.addr)
		if err != nil {
			s.Close()
			return nil, err
		}
		*st.into = a
	}
	return s, nil
}

// Addrs returns the listening addresses.
func (s *Server) Addrs() Addrs { return s.addrs }

// Close stops every listener and waits for the accept loops.
func (s *Server) Close() error {
	var errs []error
	s.once.Do(func() {
		for _, c := range s.closers {
			errs = append(errs, c())
		}
		s.wg.Wait()
	})
	return errors.Join(errs...)
}

// acceptLoop serves every connection of l with serve, in its own goroutine.
func (s *Server) acceptLoop(l net.Listener, serve func(net.Conn)) {
	s.closers = append(s.closers, l.Close)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			go serve(c)
		}
	}()
}

func (s *Server) startH1(addr string) (string, error) {
	cfg, err := serverConfig(s.opts.Identity, s.Stats, "tcp", "http/1.1")
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("upstream: h1: %w", err)
	}
	resp := Response(s.opts.BodySize)
	s.acceptLoop(l, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			tc.Close()
			return
		}
		tc.SetDeadline(time.Time{})
		serveH1(tc, resp, s.opts.IdleTimeout)
	})
	return l.Addr().String(), nil
}

func (s *Server) handler() http.Handler {
	body := Body(s.opts.BodySize)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
}

func (s *Server) startH2(addr string) (string, error) {
	cfg, err := serverConfig(s.opts.Identity, s.Stats, "tcp", "h2")
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("upstream: h2: %w", err)
	}
	p := new(http.Protocols)
	p.SetHTTP2(true)
	srv := &http.Server{Handler: s.handler(), TLSConfig: cfg, Protocols: p, IdleTimeout: s.opts.IdleTimeout,
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: 1000}}
	s.closers = append(s.closers, srv.Close)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); srv.ServeTLS(l, "", "") }()
	return l.Addr().String(), nil
}

func (s *Server) startH3(addr string) (string, error) {
	cfg, err := serverConfig(s.opts.Identity, s.Stats, "quic", "h3")
	if err != nil {
		return "", err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return "", fmt.Errorf("upstream: h3: %w", err)
	}
	srv := &http3.Server{Handler: s.handler(), TLSConfig: http3.ConfigureTLSConfig(cfg),
		QUICConfig: &quic.Config{MaxIdleTimeout: s.opts.IdleTimeout, MaxIncomingStreams: 1000}}
	s.closers = append(s.closers, func() error { srv.Close(); return pc.Close() })
	s.wg.Add(1)
	go func() { defer s.wg.Done(); srv.Serve(pc) }()
	return pc.LocalAddr().String(), nil
}

func (s *Server) startL4(addr string) (string, error) {
	cfg, err := serverConfig(s.opts.Identity, s.Stats, "tcp")
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("upstream: l4: %w", err)
	}
	s.acceptLoop(tls.NewListener(l, cfg), serveL4)
	return l.Addr().String(), nil
}

func (s *Server) startStats(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("upstream: stats: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Stats.Snapshot())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.closers = append(s.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
	s.wg.Add(1)
	go func() { defer s.wg.Done(); srv.Serve(l) }()
	return l.Addr().String(), nil
}
