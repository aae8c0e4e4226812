package proxy

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy/internal/upstream"
)

// Route is one upstream procmesh may reach (upstream.Route: its fields and
// methods are documented there).
type Route = upstream.Route

// Protocols a route may speak to its upstream (see upstream.ProtocolTCP
// and the others).
const (
	ProtocolTCP   = upstream.ProtocolTCP
	ProtocolHTTP1 = upstream.ProtocolHTTP1
	ProtocolHTTP2 = upstream.ProtocolHTTP2
	ProtocolHTTP3 = upstream.ProtocolHTTP3
	ProtocolAuto  = upstream.ProtocolAuto
)

// Policy decides whether a workload may use a route.
type Policy interface {
	Decide(policy.Request) policy.Decision
	// MayAllow reports whether anything from source could use route.
	MayAllow(source spiffeid.ID, route string) bool
}

// State is the part of the proxy's configuration that a reload swaps: the
// routes and the policy. It is immutable once built.
type State struct {
	Policy Policy
	byHost map[string]*Route
	byName map[string]*Route
}

// NewState indexes routes by host and by name.
func NewState(routes []Route, p Policy) (*State, error) {
	st := &State{Policy: p, byHost: make(map[string]*Route), byName: make(map[string]*Route)}
	for i := range routes {
		r := &routes[i]
		host := upstream.NormalHost(r.Host)
		if _, dup := st.byHost[host]; dup {
			return nil, fmt.Errorf("proxy: two routes claim host %q", host)
		}
		if _, dup := st.byName[r.Name]; dup {
			return nil, fmt.Errorf("proxy: two routes are named %q", r.Name)
		}
		st.byHost[host] = r
		st.byName[r.Name] = r
	}
	return st, nil
}

// Route returns the route with the given name.
func (st *State) Route(name string) (*Route, bool) {
	r, ok := st.byName[name]
	return r, ok
}

// routeForAuthority finds the route a request target or Host header names.
// The port, if any, is ignored: the route fixes where the connection goes.
func (st *State) routeForAuthority(authority string) (*Route, bool) {
	r, ok := st.byHost[upstream.NormalHost(authority)]
	return r, ok
}
