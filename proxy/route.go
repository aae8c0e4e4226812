package proxy

import (
	"fmt"
	"net"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/tlsconf"
)

// Protocols a route may speak to its upstream.
const (
	ProtocolTCP   = "tcp"
	ProtocolHTTP1 = "http1"
)

// Route is one upstream procmesh may reach. Clients name it by Host; the
// connection goes to Upstream, whatever address the client asked for, so
// procmesh is never an open proxy (THREATS P4).
type Route struct {
	Name     string
	Host     string // lower case, no port
	Upstream string // host:port dialled for this route
	// ServerID, when set, is the only SPIFFE ID the upstream may present;
	// otherwise any ID in ServerTrustDomain is accepted.
	ServerID          spiffeid.ID
	ServerTrustDomain spiffeid.TrustDomain
	Protocol          string
}

func (r *Route) authorizer() tlsconfig.Authorizer {
	return tlsconf.AuthorizerFor(r.ServerID, r.ServerTrustDomain)
}

// Policy decides whether a workload may use a route.
type Policy interface {
	Decide(policy.Request) policy.Decision
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
		host := normalHost(r.Host)
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
	r, ok := st.byHost[normalHost(authority)]
	return r, ok
}

// normalHost lower-cases a host, drops a port and a trailing dot.
func normalHost(authority string) string {
	h := authority
	if host, _, err := net.SplitHostPort(authority); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}
