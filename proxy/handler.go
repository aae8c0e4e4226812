package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/procmesh/procmesh/proxy/internal/framing"
	"github.com/procmesh/procmesh/proxy/internal/upstream"
	"github.com/procmesh/procmesh/workload"
)

// serveHTTP is the forward proxy's entry point for every request on the
// main socket: framing and limits, identity, route, policy, then forward or
// tunnel.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ev := &auditEvent{kind: "request", start: time.Now(), method: r.Method, target: r.RequestURI}
	defer ev.write(&s.opts)

	cc := clientConnOf(r.Context())
	if cc != nil && r.ProtoMajor == 2 {
		defer s.countStream(cc, r, ev.start)
	}
	writer := int32(0) // the process whose bytes this request is
	if cc != nil {
		writer = cc.writer.Load() // h2c: the writer of the preface
		if r.ProtoMajor == 1 {
			writer = cc.headWriter(true)
		}
	}
	if cc != nil && r.ProtoMajor == 1 {
		if ref := cc.refusalFor(r); ref != nil {
			// A stand-in for a head the scanner refused (P1, P8).
			ev.method, ev.target = ref.Method, ref.Target
			ev.id = s.identityForAudit(r.Context())
			ev.status, ev.err = ref.Status, errors.New(ref.Reason)
			cc.markDrainOnClose()
			writeClosing(w, ref.Status, "procmesh: refused: "+ref.Reason+"\n")
			return
		}
	}
	if r.ProtoMajor == 1 && (r.Method == http.MethodConnect || len(r.Header["Upgrade"]) > 0) {
		// The scanner stopped following this connection at this request
		// (framing.Scanner): it becomes a tunnel, or it closes after the answer.
		w = &closeUnlessSwitched{ResponseWriter: w}
	}
	d, ref := s.decide(r.Context(), r, cc, writer)
	if d != nil {
		ev.id, ev.route, ev.jwt = d.id, d.route, d.jwt
		if d.decided {
			ev.decision = &d.dec
		}
	}
	if ref != nil {
		s.refuse(w, r, cc, ev, ref)
		return
	}
	if r.Method == http.MethodConnect {
		ev.kind = "connection"
		s.tunnel(w, r, d.id, d.route, d.req, ev)
		return
	}
	s.forward(w, r, d.id, d.route, d.req, ev)
}

// routeFor finds the route a request names: the host of an absolute-form
// target, else the Host header (for CONNECT, the authority). With no route
// it returns the refusal's status and message.
func routeFor(st *State, r *http.Request) (route *Route, status int, msg string) {
	authority := r.Host
	if r.URL.IsAbs() {
		if r.URL.Scheme != "http" {
			return nil, http.StatusBadRequest, fmt.Sprintf("procmesh: scheme %q is not proxied; send http:// (procmesh adds the mTLS) or use CONNECT\n", r.URL.Scheme)
		}
		authority = r.URL.Host
	}
	if !wellFormedAuthority(authority) {
		return nil, http.StatusBadRequest, fmt.Sprintf("procmesh: malformed host %q: want ASCII host[:port], an IPv6 address in brackets, an internationalised name in its IDNA (xn--) form\n", authority)
	}
	route, ok := st.routeForAuthority(authority)
	if !ok {
		return nil, http.StatusForbidden, fmt.Sprintf("procmesh: no route for host %q; procmesh forwards only to configured routes\n", upstream.NormalHost(authority))
	}
	return route, 0, ""
}

// wellFormedAuthority accepts printable ASCII host[:port] with a numeric
// port, and brackets only around an IPv6 address ("[::1]", "[::1]:443"). net/http checks Host headers for
// the characters but not the brackets, and does not check the host of an
// absolute-form target or a CONNECT, which may arrive percent-encoded:
// "%E2%84%AAube.test" decodes to a KELVIN SIGN that Unicode lower-casing
// (upstream.NormalHost) turns into "kube.test"; "[::1" or "echo.test:x" would
// name "::1" and "echo.test".
func wellFormedAuthority(authority string) bool {
	for i := 0; i < len(authority); i++ {
		if c := authority[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	lb, rb := strings.IndexByte(authority, '['), strings.IndexByte(authority, ']')
	rest := authority
	switch {
	case lb < 0 && rb < 0 && strings.Count(authority, ":") > 1:
		return true // an IPv6 address without port, as routes name them
	case lb < 0 && rb < 0:
		rest = authority[max(strings.IndexByte(authority, ':'), 0):]
		if !strings.HasPrefix(rest, ":") {
			return true // no port
		}
	case lb != 0 || rb < 0 || strings.Count(authority, "[") != 1 || strings.Count(authority, "]") != 1:
		return false
	default:
		rest = authority[rb+1:]
	}
	port, ok := strings.CutPrefix(rest, ":")
	if !ok {
		return port == ""
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

// refuseLimit answers a request refused by a limit and closes its
// connection (HTTP/1.1) or, for a connection limit, the whole HTTP/2
// connection once its streams are answered.
func (s *Server) refuseLimit(w http.ResponseWriter, r *http.Request, cc *clientConn, ev *auditEvent, lim *limitError) {
	if ev.id == nil {
		ev.id = s.identityForAudit(r.Context())
	}
	ev.status, ev.err = lim.status, lim
	if lim.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if r.ProtoMajor == 1 || lim.status == http.StatusServiceUnavailable {
		if cc != nil && r.ProtoMajor == 1 {
			cc.markDrainOnClose()
		}
		writeClosing(w, lim.status, lim.message())
		return
	}
	writeError(w, lim.status, lim.message())
}

// countStream counts an ended HTTP/2 stream for the rapid-reset rule.
func (s *Server) countStream(cc *clientConn, r *http.Request, start time.Time) {
	premature := r.Context().Err() != nil && time.Since(start) < rapidResetLifetime && !cc.closed.Load()
	if cc.streamEnded(premature) {
		s.opts.Logger.Warn().Int64("streams", cc.streams.Load()).Int64("reset_early", cc.resets.Load()).
			Msg("closed an HTTP/2 connection whose client reset most of its streams early (rapid reset, THREATS P5)")
	}
}

// refusalFor returns the scanner's refusal when r is its stand-in.
func (c *clientConn) refusalFor(r *http.Request) *framing.Refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scan == nil {
		return nil
	}
	if ref := c.scan.Refused(); ref != nil && r.RequestURI == ref.Marker {
		return ref
	}
	return nil
}

// identityForAudit waits a little for the connection's identity, whatever
// the request's context says: refusals that do not depend on the identity
// still name it in their audit line when attestation finishes in time.
func (s *Server) identityForAudit(ctx context.Context) *workload.Identity {
	ci, ok := ctx.Value(connIdentityKey{}).(*connIdentity)
	if !ok {
		return nil
	}
	t := time.NewTimer(auditIdentityWait)
	defer t.Stop()
	select {
	case <-ci.done:
		id, _ := ci.current(s.resolver)
		return id
	case <-t.C:
		return nil
	}
}

const auditIdentityWait = time.Second

// disguisedHeaders are framing and hop-by-hop fields. Sent with '_' for
// '-', they mean nothing to procmesh but something to an upstream that
// treats the two alike (Envoy's edge guide: headers_with_underscores_action
// REJECT_REQUEST), so such requests are refused (P1, P2).
var disguisedHeaders = map[string]bool{
	"connection": true, "content-length": true, "transfer-encoding": true, "te": true,
	"trailer": true, "upgrade": true, "keep-alive": true, "proxy-connection": true, "host": true,
}

// checkRequestHeaders applies the header limits to a parsed request (the
// scanner already applied them to HTTP/1.1 heads as received) and refuses
// disguised framing headers.
func checkRequestHeaders(r *http.Request, l Limits) *limitError {
	n, fields := requestHeaderSize(r)
	if fields > l.MaxRequestHeaders {
		return headerCountError(l.MaxRequestHeaders)
	}
	if n > l.MaxRequestHeaderBytes {
		return headerBytesError(n, l.MaxRequestHeaderBytes)
	}
	for k := range r.Header {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		if h := strings.ToLower(strings.ReplaceAll(k, "_", "-")); disguisedHeaders[h] {
			return &limitError{status: http.StatusBadRequest,
				what: fmt.Sprintf("header %q would read as %s to an upstream that treats '_' as '-'", k, h)}
		}
	}
	return nil
}

// closeUnlessSwitched closes the connection after any final answer but a
// 101: used for the requests after which the scanner no longer follows the
// connection.
type closeUnlessSwitched struct {
	http.ResponseWriter
	wrote bool
}

func (c *closeUnlessSwitched) WriteHeader(code int) {
	if !c.wrote && code >= 200 {
		c.wrote = true
		c.Header().Set("Connection", "close")
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *closeUnlessSwitched) Write(p []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(p)
}

func (c *closeUnlessSwitched) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// setEscapedPath makes u's path the (already normalised, escaped) p.
func setEscapedPath(u *url.URL, p string) error {
	unescaped, err := url.PathUnescape(p)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = unescaped, p
	if u.EscapedPath() != p {
		u.RawPath = ""
	}
	return nil
}
