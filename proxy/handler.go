package proxy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/procmesh/procmesh/policy"
)

// serveHTTP is the forward proxy's entry point for every request on the
// main socket: identity, route, policy, then forward or tunnel.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	ev := &auditEvent{kind: "request", start: time.Now(), method: r.Method, target: r.RequestURI}
	defer ev.write(&s.opts.Audit)

	id, err := identityOf(r.Context())
	if err != nil {
		ev.refusal = err
		ev.status, _ = refusalStatus(err)
		status, msg := refusalStatus(err)
		writeError(w, status, msg)
		return
	}
	ev.id = id

	st := s.state.Load()
	authority := r.Host
	if r.URL.IsAbs() {
		if r.URL.Scheme != "http" {
			ev.status = http.StatusBadRequest
			writeError(w, ev.status, fmt.Sprintf("procmesh: scheme %q is not proxied; send http:// (procmesh adds the mTLS) or use CONNECT\n", r.URL.Scheme))
			return
		}
		authority = r.URL.Host
	}
	route, ok := st.routeForAuthority(authority)
	if !ok {
		ev.status = http.StatusForbidden
		writeError(w, ev.status, fmt.Sprintf("procmesh: no route for host %q; procmesh forwards only to configured routes\n", normalHost(authority)))
		return
	}
	ev.route = route

	dec := st.Policy.Decide(policy.Request{Source: id.ID(), Route: route.Name})
	ev.decision = &dec
	if !dec.Allow {
		ev.status = http.StatusForbidden
		writeError(w, ev.status, fmt.Sprintf("procmesh: denied by policy: %s\n", dec.Reason))
		return
	}
	if r.Method == http.MethodConnect {
		ev.kind = "connection"
		s.tunnel(w, r, id, route, ev)
		return
	}
	if route.Protocol != ProtocolHTTP1 {
		ev.status = http.StatusBadRequest
		writeError(w, ev.status, fmt.Sprintf("procmesh: route %q speaks %s, not HTTP; use CONNECT or its own socket\n", route.Name, route.Protocol))
		return
	}
	s.forward(w, r, id, route, ev)
}
