package proxy

import (
	"io"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/workload"
)

// liveConn is a CONNECT tunnel, raw-socket connection or forwarded request
// (WebSocket sessions included) in progress. Policy allowed it once, for
// its whole life, so a reload must decide it again (THREATS F6); conn ends
// it.
type liveConn struct {
	conn io.Closer
	id   *workload.Identity
	req  policy.Request
}

// liveConns is the set of live tunnels and raw connections.
type liveConns struct {
	mu sync.Mutex
	m  map[*liveConn]struct{}
}

// add registers l and returns the function that removes it.
func (ls *liveConns) add(l *liveConn) (remove func()) {
	ls.insert(l)
	return func() { ls.remove(l) }
}

// insert registers l until remove.
func (ls *liveConns) insert(l *liveConn) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = make(map[*liveConn]struct{})
	}
	ls.m[l] = struct{}{}
}

func (ls *liveConns) remove(l *liveConn) {
	ls.mu.Lock()
	delete(ls.m, l)
	ls.mu.Unlock()
}

func (ls *liveConns) snapshot() []*liveConn {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]*liveConn, 0, len(ls.m))
	for l := range ls.m {
		out = append(out, l)
	}
	return out
}

// revalidate applies a new state, and new registration entries, to what is
// already open: pools of routes that changed, of identities that no longer
// exist, or that the policy no longer lets reach their route are closed;
// live tunnels and raw connections whose identity is gone or changed, or
// that the policy now denies, are closed. Keep-alive HTTP connections are
// re-checked at their next request (connIdentity.current).
func (s *Server) revalidate(st *State) {
	known := s.knownIDs()
	s.pools.retain(st, func(id spiffeid.ID, route string) bool {
		_, ok := known[id]
		return (ok || known == nil) && st.Policy.MayAllow(id, route)
	})
	for _, l := range append(s.live.snapshot(), s.fast.live()...) {
		reason := s.stillAllowed(st, l)
		if reason == "" {
			continue
		}
		l.conn.Close()
		s.opts.Logger.Info().Str("spiffe_id", l.id.ID().String()).Int32("pid", l.id.Process.PID).
			Str("route", l.req.Route).Str("reason", reason).Msg("closed a connection the new config no longer allows")
	}
}

// stillAllowed returns why l is no longer allowed, or "".
func (s *Server) stillAllowed(st *State, l *liveConn) string {
	id, err := s.opts.Resolver.Rematch(l.id)
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
	if p, ok := s.opts.Resolver.(interface{ ProviderDecides() bool }); ok && p.ProviderDecides() {
		return nil
	}
	entries := s.opts.Resolver.Generation().Entries()
	ids := make(map[spiffeid.ID]struct{}, len(entries))
	for _, e := range entries {
		ids[e.ID] = struct{}{}
	}
	return ids
}
