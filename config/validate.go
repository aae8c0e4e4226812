package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/internal/units"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/registry"
)

// Validate checks the relations between the settings of c: operator CA
// files given in pairs, trust bundles, workload IDs in c.TrustDomain and no
// tied registration entries (THREATS I8), route names, hosts and sockets
// unique, every route's server identity covered by a trust bundle, route
// sockets only for protocol tcp, policy rules naming existing routes and
// callers of this trust domain, no policy rule that can never decide a
// request (see policy.New), limits consistent with each other, and inbound
// listeners (names, addresses and sockets unique, identities registered,
// callers' trust domains with a bundle, pass_identity fitting the
// protocol; see validateInbound). Problems
// name c.Path and the Line of the item at fault. Validate reads nothing but
// c and changes nothing; Parse calls it once every setting on its own is
// well-formed.
func (c *Config) Validate() error {
	ps := &problems{file: c.Path}
	if c.TrustDomain.IsZero() {
		ps.add(0, "", "missing required key %q", "trust_domain")
	}
	if ca := c.Identity.CA; (ca.Cert == "") != (ca.Key == "") {
		ps.add(0, "identity.ca", "set both cert and key (operator CA) or neither (CA generated under state_dir)")
	}
	bundles := c.validateBundles(ps)
	c.validateWorkloads(ps)
	c.validateRoutes(ps, bundles)
	c.validatePolicy(ps)
	c.validateJWTRules(ps)
	c.validateLimits(ps)
	c.validateInbound(ps, bundles)
	sortProblems(ps.list)
	return ps.err()
}

// validateBundles returns the trust domains with a bundle, own one included.
func (c *Config) validateBundles(ps *problems) map[spiffeid.TrustDomain]bool {
	known := map[spiffeid.TrustDomain]bool{c.TrustDomain: true}
	first := map[spiffeid.TrustDomain]int{}
	for i, b := range c.TrustBundles {
		key := fmt.Sprintf("trust_bundles[%d].trust_domain", i)
		switch j, dup := first[b.TrustDomain]; {
		case b.TrustDomain == c.TrustDomain:
			ps.add(b.Line, key, "%s is this node's own trust_domain; its bundle comes from procmesh's CA (identity), remove this entry", b.TrustDomain)
		case dup:
			ps.add(b.Line, key, "%s already has a bundle at trust_bundles[%d] (line %d); put all its CA certificates in one PEM file",
				b.TrustDomain, j, c.TrustBundles[j].Line)
		default:
			first[b.TrustDomain] = i
			known[b.TrustDomain] = true
		}
	}
	return known
}

func (c *Config) validateWorkloads(ps *problems) {
	if c.Identity.Provider == "spire" && len(c.Workloads) > 0 {
		// One source of truth: SPIRE's registration entries.
		ps.add(c.Workloads[0].Line, "workloads", "identity.provider is spire: registration entries live in SPIRE "+
			"(spire-server entry create); remove the workloads section (policy stays here)")
		return
	}
	for i, w := range c.Workloads {
		if !c.TrustDomain.IsZero() && !w.SPIFFEID.MemberOf(c.TrustDomain) {
			ps.add(w.Line, fmt.Sprintf("workloads[%d].spiffe_id", i),
				"%s is not in trust_domain %s; processes on this node get IDs of their own trust domain", w.SPIFFEID, c.TrustDomain)
		}
	}
	_, err := registry.New(c.RegistryEntries())
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	line := func(e registry.Entry) int { return c.Workloads[e.Index].Line }
	for _, err := range errs {
		var tie *registry.TieError
		var ee *registry.EntryError
		switch {
		case errors.As(err, &tie) && tie.Duplicate:
			ps.add(line(tie.Second), fmt.Sprintf("workloads[%d]", tie.Second.Index),
				"has the same selectors as workloads[%d] (line %d); remove one", tie.First.Index, line(tie.First))
		case errors.As(err, &tie):
			ps.add(line(tie.Second), fmt.Sprintf("workloads[%d]", tie.Second.Index),
				"ties with workloads[%d] (line %d): %s", tie.First.Index, line(tie.First), tie.Advice())
		case errors.As(err, &ee):
			ps.add(line(ee.Entry), fmt.Sprintf("workloads[%d]", ee.Entry.Index), "%s", ee.Reason)
		default:
			ps.add(0, "workloads", "%v", err)
		}
	}
}

func (c *Config) validateRoutes(ps *problems, bundles map[spiffeid.TrustDomain]bool) {
	names, hosts := map[string]int{}, map[string]int{}
	sockets := map[string]string{c.Listen.Socket: "listen.socket"}
	if c.Listen.WorkloadAPI != "" {
		sockets[c.Listen.WorkloadAPI] = "listen.workload_api"
	}
	for i, r := range c.Routes {
		key := func(k string) string { return fmt.Sprintf("routes[%d].%s", i, k) }
		if j, dup := names[r.Name]; dup {
			ps.add(r.Line, key("name"), "%q is already the name of routes[%d] (line %d)", r.Name, j, c.Routes[j].Line)
		} else {
			names[r.Name] = i
		}
		if j, dup := hosts[r.Host]; dup {
			ps.add(r.Line, key("host"), "%s is already the host of routes[%d] (line %d)", r.Host, j, c.Routes[j].Line)
		} else {
			hosts[r.Host] = i
		}
		td, tdKey := r.ServerTrustDomain, key("server_trust_domain")
		switch {
		case r.ServerID.IsZero() && td.IsZero():
			ps.add(r.Line, fmt.Sprintf("routes[%d]", i), "set server_id (the one SPIFFE ID the upstream must present) or server_trust_domain (accept any ID of that trust domain)")
		case !r.ServerID.IsZero() && !td.IsZero() && !r.ServerID.MemberOf(td):
			ps.add(r.Line, key("server_id"), "%s is not in server_trust_domain %s; keep only one of the two", r.ServerID, td)
			td = spiffeid.TrustDomain{}
		case !r.ServerID.IsZero():
			td, tdKey = r.ServerID.TrustDomain(), key("server_id")
		}
		if !td.IsZero() && !bundles[td] {
			ps.add(r.Line, tdKey, "no trust bundle for trust domain %s; add to trust_bundles: {trust_domain: %s, file: /etc/procmesh/%s.pem}", td, td, td)
		}
		if r.Protocol != "tcp" && r.Socket != "" {
			ps.add(r.Line, key("socket"), "a route socket carries raw bytes and needs protocol: tcp (this route is %s); set protocol: tcp or remove socket", r.Protocol)
		}
		if r.JWTSVID.On() {
			c.validateJWTSVID(ps, r, key("jwt_svid"))
		}
		if r.Preconnect > 0 && r.Protocol != "http1" {
			ps.add(r.Line, key("preconnect"), "preconnections serve the HTTP/1.1 fast path and this route is %s; set protocol: http1 or remove preconnect", r.Protocol)
		}
		if r.Socket != "" {
			if other, dup := sockets[r.Socket]; dup {
				ps.add(r.Line, key("socket"), "%s is already used by %s", r.Socket, other)
			} else {
				sockets[r.Socket] = fmt.Sprintf("routes[%d] (line %d)", i, r.Line)
			}
		}
	}
}

func (c *Config) validatePolicy(ps *problems) {
	routes := make([]string, 0, len(c.Routes))
	for _, r := range c.Routes {
		if !slices.Contains(routes, r.Name) {
			routes = append(routes, r.Name)
		}
	}
	known := "no routes are defined"
	if len(routes) > 0 {
		known = "routes: " + strings.Join(routes, ", ")
	}
	before := len(ps.list)
	names := map[string]int{}
	for i, r := range c.Policy.Rules {
		if j, dup := names[r.Name]; dup {
			ps.add(r.Line, fmt.Sprintf("policy.rules[%d].name", i), "%q is already the name of policy.rules[%d] (line %d)", r.Name, j, c.Policy.Rules[j].Line)
		} else {
			names[r.Name] = i
		}
		for k, from := range r.From {
			if !c.TrustDomain.IsZero() && !from.ID.MemberOf(c.TrustDomain) {
				ps.add(r.Line, fmt.Sprintf("policy.rules[%d].from[%d]", i, k),
					"%s is not in trust_domain %s; rules name callers on this node, whose IDs are in trust_domain", from, c.TrustDomain)
			}
		}
		for k, to := range r.To {
			if !slices.Contains(routes, to) {
				ps.add(r.Line, fmt.Sprintf("policy.rules[%d].to[%d]", i, k), "no route named %q (%s)", to, known)
			}
		}
	}
	if len(ps.list) == before {
		c.checkRules(ps)
	}
}

// checkRules builds the policy as run would and reports what policy.New
// refuses, chiefly rules that can never decide a request, at their lines.
func (c *Config) checkRules(ps *problems) {
	_, err := policy.New(c.Policy.DefaultAllow(), c.PolicyRules(), policy.WithRouteProtocols(c.RouteProtocols()))
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, err := range errs {
		var re *policy.RuleError
		if !errors.As(err, &re) || re.Index < 0 || re.Index >= len(c.Policy.Rules) {
			ps.add(0, "policy", "%v", err)
			continue
		}
		key := fmt.Sprintf("policy.rules[%d]", re.Index)
		if re.Field != "" {
			key += "." + re.Field
		}
		msg := re.Reason
		if len(re.By) > 0 {
			var see []string
			for _, i := range re.By {
				if line := c.Policy.Rules[i].Line; line > 0 {
					see = append(see, fmt.Sprintf("policy.rules[%d] at line %d", i, line))
				} else {
					see = append(see, fmt.Sprintf("policy.rules[%d]", i))
				}
			}
			msg += " (" + strings.Join(see, ", ") + ")"
		}
		ps.add(c.Policy.Rules[re.Index].Line, key, "%s", msg)
	}
}

// validateLimits checks the limits that bound each other.
func (c *Config) validateLimits(ps *problems) {
	l, q := c.Limits, c.Upstream.QUIC
	if l.MaxConnections > 0 && l.MaxConnectionsPerIdentity > l.MaxConnections {
		ps.add(l.Line, "limits.max_connections_per_identity", "%d is above limits.max_connections (%d); one identity could never use them all",
			l.MaxConnectionsPerIdentity, l.MaxConnections)
	}
	if l.MaxConnections > 0 && l.MaxUnattestedConnectionsPerUID >= l.MaxConnections {
		ps.add(l.Line, "limits.max_unattested_connections_per_uid", "%d is not below limits.max_connections (%d); the unregistered processes of one uid could take every connection",
			l.MaxUnattestedConnectionsPerUID, l.MaxConnections)
	}
	if q.IdleTimeout > 0 && q.KeepAlivePeriod >= q.IdleTimeout {
		ps.add(q.Line, "upstream.quic.keep_alive_period", "%s is not below upstream.quic.idle_timeout (%s); the connection would time out between keep-alives",
			units.FormatDuration(q.KeepAlivePeriod), units.FormatDuration(q.IdleTimeout))
	}
	if q.MaxConnectionReceiveWindow > 0 && q.MaxStreamReceiveWindow > q.MaxConnectionReceiveWindow {
		ps.add(q.Line, "upstream.quic.max_stream_receive_window", "%s is above upstream.quic.max_connection_receive_window (%s); one stream could never use it",
			units.FormatSize(q.MaxStreamReceiveWindow), units.FormatSize(q.MaxConnectionReceiveWindow))
	}
}
