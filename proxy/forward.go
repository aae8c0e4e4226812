package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"

	"github.com/procmesh/procmesh/workload"
)

// forwardInfo travels in the outbound request's context from serveHTTP to
// the reverse proxy's hooks.
type forwardInfo struct {
	id    *workload.Identity
	route *Route
	ev    *auditEvent
}

type forwardInfoKey struct{}

func forwardInfoOf(ctx context.Context) *forwardInfo {
	fi, _ := ctx.Value(forwardInfoKey{}).(*forwardInfo)
	return fi
}

// newReverseProxy returns the one ReverseProxy the server uses for every
// route and identity: the per-(identity, route) transport is chosen per
// request from the request's context.
func (s *Server) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			fi := forwardInfoOf(pr.In.Context())
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = fi.route.Host
			pr.Out.Host = ""
			pr.Out.Header.Del("Proxy-Authorization")
		},
		Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			fi := forwardInfoOf(req.Context())
			return s.pools.get(fi.id, fi.route).transport.RoundTrip(req)
		}),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			fi := forwardInfoOf(r.Context())
			fi.ev.err = err
			status := http.StatusBadGateway
			if r.Context().Err() != nil {
				status = 499 // client went away; nobody reads this
			}
			fi.ev.status = status
			writeError(w, status, fmt.Sprintf("procmesh: upstream %s for route %q failed: %v\n", fi.route.Upstream, fi.route.Name, err))
		},
		ErrorLog: newStdLogger(s.opts.Logger),
	}
}

// forward sends one request to route over the workload's pooled mTLS
// connections and copies the response back.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, id *workload.Identity, route *Route, ev *auditEvent) {
	fi := &forwardInfo{id: id, route: route, ev: ev}
	ctx := context.WithValue(r.Context(), forwardInfoKey{}, fi)
	body := &countingReader{r: r.Body}
	req := r.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		req.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	s.rp.ServeHTTP(cw, req)
	ev.up, ev.down = body.n, cw.n
	if ev.status == 0 {
		ev.status = cw.status
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countingReader counts request body bytes sent upstream.
type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// countingWriter counts response bytes and records the status; Unwrap lets
// http.ResponseController reach Flush and Hijack underneath.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
