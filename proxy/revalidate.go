package proxy

import (
	"io"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/workload"
)

// liveConn is a CONNECT tunnel, raw-socket connection or forwarded request
// (WebSocket sessions included) in progress. Policy allowed it once, for
// its whole life, so a reload must decide it again (THREATS F6); end ends
// it (the connection, or the timer of a forwarded request).
type liveConn struct {
	end io.Closer
	id  *workload.Identity
	req policy.Request
}

// track registers l for reload until the returned function is called.
func (s *Server) track(l *liveConn) (untrack func()) {
	s.live.add(l)
	return func() { s.live.remove(l) }
}

// revalidate applies a new state, and new registration entries, to what is
// already open: pools of routes that changed, of identities that no longer
// exist, or that the policy no longer lets reach their route are closed;
// live tunnels and raw connections whose identity is gone or changed, or
// that the policy now denies, are closed. Keep-alive HTTP connections are
// re-checked at their next request (connIdentity.current).
func (s *Server) revalidate(st *State) {
	known := s.knownIDs()
	s.pools.Retain(func(id spiffeid.ID, built *Route) bool {
		_, ok := known[id]
		r, still := st.Route(built.Name)
		return still && *r == *built && (ok || known == nil) && st.Policy.MayAllow(id, built.Name)
	})
	var live []*liveConn
	s.live.each(func(l *liveConn) { live = append(live, l) })
	s.fast.each(func(fc *fastConn) {
		if l := fc.live.Load(); l != nil {
			live = append(live, l)
		}
	})
	for _, l := range live {
		reason := s.stillAllowed(st, l)
		if reason == "" {
			continue
		}
		l.end.Close()
		s.opts.Logger.Info().Str("spiffe_id", l.id.ID().String()).Int32("pid", l.id.Process.PID).
			Str("route", l.req.Route).Str("reason", reason).Msg("closed a connection the new config no longer allows")
	}
}

// stillAllowed returns why l is no longer allowed, or "".
func (s *Server) stillAllowed(st *State, l *liveConn) string {
	id, err := s.resolver.Rematch(l.id)
	switch {
	case err != nil:
		return "its process matches no registration entry any more"
	case id.ID() != l.id.ID():
		return "its process is now " + id.ID().String()
	}
	if _, ok := st.Route(l.req.Route); !ok {
		return "its route was removed"
	}
	if d := st.Policy.Decide(l.req); !d.Allow {
		return "policy: " + d.Reason
	}
	return ""
}

// knownIDs is the set of SPIFFE IDs the registration entries in force can
// give.
//
// It is nil, meaning any, when an identity provider (SPIRE) decides IDs:
// the registration entries are then empty and say nothing.
func (s *Server) knownIDs() map[spiffeid.ID]struct{} {
	if p, ok := s.resolver.(interface{ ProviderDecides() bool }); ok && p.ProviderDecides() {
		return nil
	}
	entries := s.resolver.Generation().Entries()
	ids := make(map[spiffeid.ID]struct{}, len(entries))
	for _, e := range entries {
		ids[e.ID] = struct{}{}
	}
	return ids
}
