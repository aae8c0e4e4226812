package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy/internal/upstream"
	"github.com/procmesh/procmesh/workload"
)

// forwardInfo travels in the outbound request's context from serveHTTP to
// the reverse proxy's hooks.
type forwardInfo struct {
	id    *workload.Identity
	route *Route
	ev    *auditEvent
	body  *countingReader
	timer *streamTimer
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
		BufferPool: s.bufs,
		// httputil strips hop-by-hop headers and those the Connection
		// header names (P2) before Rewrite, and sets Upgrade again for an
		// upgrade request; Rewrite drops it again for any upgrade but
		// WebSocket (P3).
		Rewrite: func(pr *httputil.ProxyRequest) {
			fi := forwardInfoOf(pr.In.Context())
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = fi.route.Host
			pr.Out.Host = ""
			pr.Out.Header.Del("Proxy-Authorization")
			s.reqFilter.strip(pr.Out.Header) // P9
			if !isWebSocketUpgrade(pr.In) {
				pr.Out.Header.Del("Upgrade")
				pr.Out.Header.Del("Connection")
				pr.Out.Header.Del("Http2-Settings")
			}
		},
		Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			fi := forwardInfoOf(req.Context())
			res, err := s.upstreamFor(fi.id, fi.route).Transport().RoundTrip(req)
			if err != nil {
				return nil, err
			}
			if fi.timer.cause.Load() != nil || fi.body.failure() != nil {
				// The upstream answered a body procmesh cut short (a stalled
				// or broken client body, a limit): the client is told why.
				res.Body.Close()
				return nil, errors.New("request body cut short")
			}
			if n, max := headerFields(res.Header), s.opts.MaxResponseHeaders; n > max {
				res.Body.Close()
				return nil, responseHeaderCountError(n, max)
			}
			return res, nil
		}),
		ModifyResponse: func(res *http.Response) error {
			fi := forwardInfoOf(res.Request.Context())
			// The upstream's response goes to the client from here on; a
			// stream timer firing from now cuts it (streamTimer.fire).
			fi.timer.started.Store(true)
			if lim := fi.timer.cause.Load(); lim != nil {
				return lim
			}
			if res.StatusCode == http.StatusSwitchingProtocols {
				// From here the connection is a WebSocket: its idle time is
				// watched on the hijacked connection (clientConn). A failed
				// switch overwrites the status in ErrorHandler.
				fi.timer.stop()
				fi.ev.status = http.StatusSwitchingProtocols
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			fi := forwardInfoOf(r.Context())
			status, msg, cause := fi.failure(r, err)
			fi.ev.err, fi.ev.status = cause, status
			if r.ProtoMajor == 1 && status != http.StatusBadGateway {
				// A timed-out or broken request leaves the connection
				// unusable (its read deadline passed, its body unread).
				w.Header().Set("Connection", "close")
			}
			writeError(w, status, msg)
		},
		ErrorLog: newStdLogger(s.opts.Logger),
	}
}

// forward sends one request to route over the workload's pooled mTLS
// connections and copies the response back, within the stream limits.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, id *workload.Identity, route *Route, preq policy.Request, ev *auditEvent) {
	lim := s.opts.Limits
	if lim.MaxRequestBodyBytes > 0 && r.ContentLength > lim.MaxRequestBodyBytes {
		e := bodyTooLarge(lim.MaxRequestBodyBytes)
		ev.err, ev.status = e, e.status
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close") // the body stays unread
		}
		writeError(w, e.status, e.message())
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	ctx, timer := newStreamTimer(r.Context(), http.NewResponseController(cw), lim)
	defer timer.stop()
	// A reload that no longer allows this request (or its identity) ends
	// it through the timer's context, WebSocket sessions included:
	// ReverseProxy closes an upgraded connection when the request's
	// context ends (F6).
	defer s.track(&liveConn{end: timer, id: id, req: preq})()
	cw.timer = timer
	body := &countingReader{r: r.Body, timer: timer, limit: lim.MaxRequestBodyBytes}
	fi := &forwardInfo{id: id, route: route, ev: ev, body: body, timer: timer}
	req := r.WithContext(context.WithValue(ctx, forwardInfoKey{}, fi))
	if r.Body != nil && r.Body != http.NoBody {
		req.Body = body
	}
	cc := clientConnOf(r.Context())
	// ReverseProxy ends a failed response copy with panic(ErrAbortHandler):
	// the audit line is filled in on the way out.
	defer func() {
		ev.up, ev.down = body.n.Load(), cw.n
		if cc != nil && cc.hijacked.Load() {
			ev.up, ev.down = ev.up+cc.bytesUp.Load(), ev.down+cc.bytesDown.Load()
			if cc.idleFired.Load() {
				ev.err = streamIdleError(0, "on the WebSocket", lim.StreamIdleTimeout)
			}
		}
		if ev.status == 0 {
			ev.status = cw.status
		}
		if lim := timer.cause.Load(); lim != nil && ev.err == nil {
			ev.err = lim
		}
	}()
	s.rp.ServeHTTP(cw, req)
}

// isWebSocketUpgrade reports an HTTP/1.1 request to switch to WebSocket,
// the one upgrade procmesh passes through: an Upgrade header alone does
// not make one (httputil requires Connection: upgrade too).
func isWebSocketUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Method == http.MethodGet &&
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") &&
		strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket")
}

// failure chooses what a client is told when forwarding failed, and the
// error for the audit line.
func (fi *forwardInfo) failure(r *http.Request, err error) (int, string, error) {
	if lim := fi.timer.cause.Load(); lim != nil {
		if lim.key == keyStreamIdleTimeout && fi.body.waiting() {
			return http.StatusRequestTimeout, "procmesh: the request body stalled: " + lim.Error() + "\n", lim
		}
		return lim.status, lim.message(), lim
	}
	var le *limitError
	bodyErr := fi.body.failure()
	if cc := clientConnOf(r.Context()); bodyErr != nil && cc != nil {
		if ferr := cc.framingError(); ferr != nil {
			bodyErr = ferr // net/http may report it as a mere EOF
		}
	}
	switch {
	case errors.As(bodyErr, &le):
		return le.status, le.message(), le
	case bodyErr != nil:
		return http.StatusBadRequest, fmt.Sprintf("procmesh: malformed or incomplete request body: %v\n", bodyErr), bodyErr
	case errors.As(err, &le):
		return le.status, le.message(), le
	case r.Context().Err() != nil:
		return 499, "", err // client went away; nobody reads this
	}
	msg := fmt.Sprintf("procmesh: upstream %s for route %q failed: %v", fi.route.Upstream, fi.route.Name, err)
	var hl *upstream.HeaderLimitError
	if errors.As(err, &hl) {
		msg += fmt.Sprintf(" (%s)", keyResponseHeaderBytes)
	}
	return http.StatusBadGateway, msg + "\n", err
}

func bodyTooLarge(max int64) *limitError {
	return &limitError{status: http.StatusRequestEntityTooLarge,
		what: fmt.Sprintf("request body is over %d bytes", max), key: keyRequestBodyBytes, value: fmt.Sprint(max)}
}

func headerFields(h http.Header) int {
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	return n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
