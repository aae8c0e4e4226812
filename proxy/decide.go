package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/workload"
)

// decision is what the one decision made of a request: who asks, for
// which route, and what policy said.
type decision struct {
	id      *workload.Identity
	route   *Route
	req     policy.Request
	dec     policy.Decision
	decided bool   // the policy was asked (dec is set)
	jwt     string // the attached JWT-SVID's jti hash, for the audit line
}

// refusal is a request the decision refused: what to answer and log.
type refusal struct {
	lim    *limitError // a limit: refuseLimit answers it
	noID   error       // the caller has no identity: the connection closes
	status int
	msg    string
	err    error // the audit line's error
}

// decide runs every rule both HTTP paths apply, in one order: the
// connection limit, the identity of the request's writer, the identity's
// connection limit, the header limits, the route, the path's normal form
// and the policy. The net/http path writes the refusal; the fast path
// hands any refused request to it, so every refusal is written by the
// same code. r's URL path is normalised in place.
func (s *Server) decide(ctx context.Context, r *http.Request, cc *clientConn, writer int32) (*decision, *refusal) {
	if cc != nil && cc.overTotal {
		return nil, &refusal{lim: cc.admit(spiffeid.ID{})}
	}
	var id *workload.Identity
	var err error
	if cc != nil {
		id, err = s.writerIdentity(ctx, cc, writer)
	} else {
		id, err = s.identityOf(ctx)
	}
	if err != nil {
		status, msg := refusalStatus(err)
		return nil, &refusal{noID: err, status: status, msg: msg}
	}
	d := &decision{id: id}
	if cc != nil {
		if lim := cc.admit(id.ID()); lim != nil {
			return d, &refusal{lim: lim}
		}
	}
	if lim := checkRequestHeaders(r, s.opts.Limits); lim != nil {
		return d, &refusal{lim: lim}
	}
	st := s.state.Load()
	route, status, msg := routeFor(st, r)
	if route == nil {
		return d, &refusal{status: status, msg: msg}
	}
	d.route = route
	if route.JWTAudience != "" {
		// The route's token field comes from procmesh alone: a caller
		// cannot send its own, or another's (THREATS P9).
		r.Header.Del(route.JWTHeader)
	}
	d.req = policy.Request{Source: id.ID(), Selectors: id.Process.Selectors, Route: route.Name}
	if r.Method == http.MethodConnect {
		d.req.Connection = true
	} else {
		// Policy matches the normalised path and the upstream receives
		// that same path, so the two can never disagree about it.
		escaped := r.URL.EscapedPath()
		norm, err := policy.NormalizePath(escaped)
		if err == nil && norm != escaped {
			err = setEscapedPath(r.URL, norm)
		}
		if err != nil {
			return d, &refusal{status: http.StatusBadRequest, err: err, msg: fmt.Sprintf("procmesh: request path refused: %v\n", err)}
		}
		d.req.Method, d.req.Path, d.req.Header = r.Method, norm, r.Header
	}
	d.dec, d.decided = st.Policy.Decide(d.req), true
	if !d.dec.Allow {
		return d, &refusal{status: http.StatusForbidden, msg: fmt.Sprintf("procmesh: denied by policy: %s\n", d.dec.Reason)}
	}
	if r.Method != http.MethodConnect && !route.SpeaksHTTP() {
		return d, &refusal{status: http.StatusBadRequest,
			msg: fmt.Sprintf("procmesh: route %q speaks %s, not HTTP; use CONNECT or its own socket\n", route.Name, route.Protocol)}
	}
	if route.JWTAudience != "" {
		return d, s.attachJWT(ctx, r, d)
	}
	return d, nil
}

// attachJWT puts the caller's JWT-SVID in the route's token field. No
// token, no request: it goes nowhere without one, and a tunnel, which
// could carry none, is refused.
func (s *Server) attachJWT(ctx context.Context, r *http.Request, d *decision) *refusal {
	route := d.route
	if r.Method == http.MethodConnect {
		return &refusal{status: http.StatusForbidden, err: errors.New("CONNECT to a route that attaches a JWT-SVID"),
			msg: fmt.Sprintf("procmesh: route %q attaches a JWT-SVID to each HTTP request, which a tunnel cannot carry; send plain http:// requests\n", route.Name)}
	}
	tok, err := s.jwt.token(ctx, d.id, route)
	if err != nil {
		err = fmt.Errorf("no JWT-SVID: %w", err)
		return &refusal{status: http.StatusServiceUnavailable, err: err,
			msg: fmt.Sprintf("procmesh: route %q needs a JWT-SVID for %s and none could be had: %v; the request was not sent\n", route.Name, d.id.ID(), err)}
	}
	r.Header[route.JWTHeader] = []string{tok.value(route.JWTHeader)}
	d.jwt = tok.jtiHash
	return nil
}

// refuse writes a refusal of the decision and fills the audit line.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, cc *clientConn, ev *auditEvent, ref *refusal) {
	switch {
	case ref.lim != nil:
		s.refuseLimit(w, r, cc, ev, ref.lim)
	case ref.noID != nil:
		ev.refusal, ev.status = ref.noID, ref.status
		if r.Context().Err() != nil {
			// The request ended (an HTTP/2 stream reset) before the
			// connection's attestation did: nobody reads this, and the
			// connection is not the request's to close.
			writeError(w, ref.status, ref.msg)
			return
		}
		// The connection has no identity: it is closed after the answer,
		// not kept for requests that would be refused too (F11).
		if cc != nil && r.ProtoMajor == 1 {
			cc.markDrainOnClose()
		}
		writeClosing(w, ref.status, ref.msg)
	default:
		ev.status, ev.err = ref.status, ref.err
		writeError(w, ref.status, ref.msg)
	}
}
