package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Options configure a Server.
type Options struct {
	// Listen is host:port (TCP) or an absolute path (a Unix socket, made
	// 0600: the status page names every process's identity).
	Listen string
	// Pprof serves Go's profiler under /debug/pprof/.
	Pprof   bool
	Logger  zerolog.Logger
	Monitor *Monitor
	Info    Info
	// Ready lists the readiness conditions; /readyz is 200 when all hold.
	Ready func() []Check
	// Explain writes how procmesh sees process pid (package explain).
	Explain func(w io.Writer, pid int32) error
}

// Server is a running admin listener.
type Server struct {
	opts Options
	ln   net.Listener
	http *http.Server
	done chan struct{}
}

// Start binds opts.Listen and serves it in the background.
func Start(opts Options) (*Server, error) {
	if opts.Monitor == nil {
		return nil, errors.New("admin: Start needs a Monitor")
	}
	if opts.Ready == nil {
		opts.Ready = func() []Check { return nil }
	}
	ln, err := listen(opts.Listen)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ln: ln, done: make(chan struct{})}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error().Err(err).Str("admin", opts.Listen).Msg("admin listener stopped")
		}
	}()
	return s, nil
}

func listen(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "/") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("admin: listen on %s: %w; free the port or change admin.listen", addr, err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(addr); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin: %s exists and is not a socket; remove it or change admin.listen", addr)
		}
		os.Remove(addr) // a socket left by a previous run
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", addr, err)
	}
	if err := os.Chmod(addr, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

// Addr is the address bound: host:port, or the socket path.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the listener, waiting up to ctx for requests in flight.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	<-s.done
	return err
}

// Handler serves every admin path.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Monitor.Registry(), promhttp.HandlerOpts{ErrorLog: promLog{s.opts.Logger}}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(s.status())
	})
	mux.HandleFunc("GET /explain", s.explain)
	mux.HandleFunc("GET /{$}", s.page)
	if s.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (s *Server) status() *Status { return s.opts.Monitor.Status(s.opts.Info, s.opts.Ready()) }

// readyz is 200 "ready" when every check holds, else 503 listing them.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	checks := s.opts.Ready()
	var b strings.Builder
	ok := true
	for _, c := range checks {
		mark := "ok"
		if !c.OK {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(&b, "%s %s: %s\n", mark, c.Name, c.Detail)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready\n"+b.String())
		return
	}
	io.WriteString(w, "ready\n"+b.String())
}

func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, s.status()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Write(buf.Bytes())
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	pid, err := strconv.ParseInt(r.URL.Query().Get("pid"), 10, 32)
	if err != nil || pid <= 0 {
		http.Error(w, "explain: give the process as ?pid=N", http.StatusBadRequest)
		return
	}
	view := explainView{PID: int32(pid)}
	var buf bytes.Buffer
	if s.opts.Explain == nil {
		view.Error = "explain is not available"
	} else if err := s.opts.Explain(&buf, int32(pid)); err != nil {
		view.Error = err.Error()
	}
	view.Text = buf.String()
	if r.URL.Query().Get("format") == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if view.Error != "" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, view.Error+"\n")
			return
		}
		io.WriteString(w, view.Text)
		return
	}
	buf.Reset()
	if err := explainTemplate.Execute(&buf, view); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if view.Error != "" {
		w.WriteHeader(http.StatusNotFound)
	}
	w.Write(buf.Bytes())
}

type explainView struct {
	PID         int32
	Text, Error string
}

// promLog sends promhttp's errors to the log.
type promLog struct{ log zerolog.Logger }

func (l promLog) Println(v ...any) { l.log.Error().Msg(fmt.Sprint(v...)) }
