package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/procmesh/procmesh/policy"
)

// Inbound is one item of inbound: a network-facing mTLS listener in front
// of a local service's Unix socket (THREATS N1-N4). It is the one kind of
// TCP listener procmesh has.
type Inbound struct {
	Name     string      // required; lowercase DNS label, unique among inbound items; the policy's route name
	Listen   string      // required; host:port, host an IP address or empty (all addresses)
	Service  string      // required; the local service's Unix socket
	Protocol string      // tcp | http1 | http2; default http1
	Identity spiffeid.ID // required; presented only while the serving process is attested as it
	// Policy decides who may call. Its rules have no to (this listener is
	// the route) and no selectors (remote callers have none here); their
	// from may name IDs of any trust domain with a bundle. Default deny.
	Policy Policy
	// PassIdentity (key pass_identity) tells the service who called: xfcc
	// (HTTP only; default for http1 and http2), proxy-v2 (tcp only) or none
	// (default for tcp).
	PassIdentity string
	Line         int
}

// Protocols and identity passing of inbound items.
var (
	inboundProtocols      = []string{"tcp", "http1", "http2"}
	inboundPassIdentities = []string{"xfcc", "proxy-v2", "none"}
)

func (w *walker) inbound(n *yaml.Node, path string) Inbound {
	in := Inbound{Line: n.Line}
	f, ok := w.mapping(n, path, keys("inbound[]")...)
	if !ok {
		w.notNull(n, path)
		return in
	}
	if v := w.require(f, "name", `names the listener in policy decisions and audit lines, like "orders"`); v != nil {
		in.Name, _ = w.label(v, f.key("name"), "inbound name", "orders")
	}
	if v := w.require(f, "listen", "the TCP address remote callers connect to, like 0.0.0.0:8443"); v != nil {
		in.Listen, _ = w.listenAddr(v, f.key("listen"))
	}
	if v := w.require(f, "service", "the local service's Unix socket, like /run/orders/orders.sock"); v != nil {
		in.Service, _ = w.socketPath(v, f.key("service"))
	}
	in.Protocol, _ = w.oneOf(f.get("protocol"), f.key("protocol"), inboundProtocols, nil)
	if v := w.require(f, "identity", "the SPIFFE ID presented to callers, which the serving process must have, like spiffe://example.org/orders"); v != nil {
		in.Identity, _ = w.spiffeID(v, f.key("identity"), "add a path, like spiffe://example.org/orders")
	}
	in.PassIdentity, _ = w.oneOf(f.get("pass_identity"), f.key("pass_identity"), inboundPassIdentities, nil)
	if p, ok := w.mapping(f.get("policy"), f.key("policy"), keys("inbound[].policy")...); ok {
		in.Policy.Default, _ = w.oneOf(p.get("default"), p.key("default"), []string{"allow", "deny"}, nil)
		items, _ := w.list(p.get("rules"), p.key("rules"))
		for i, rn := range items {
			in.Policy.Rules = append(in.Policy.Rules, w.ruleOf(rn, fmt.Sprintf("%s[%d]", p.key("rules"), i), "inbound[].policy.rules[]"))
		}
	}
	return in
}

// listenAddr accepts IP:port or :port.
func (w *walker) listenAddr(n *yaml.Node, path string) (string, bool) {
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return "", ok
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		w.add(n.Line, path, "%q is not host:port; write it as 0.0.0.0:8443, [::]:8443 or :8443", s)
		return "", false
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			w.add(n.Line, path, "host %q of %q is not an IP address; procmesh listens on addresses, not names (write 0.0.0.0 for all)", host, s)
			return "", false
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		w.add(n.Line, path, "port %q of %q is not a number between 1 and 65535", port, s)
		return "", false
	}
	return s, true
}

// applyInboundDefaults fills protocol, pass_identity, policy.default and
// rule names and modes of the inbound items.
func (c *Config) applyInboundDefaults() {
	for i := range c.Inbound {
		in := &c.Inbound[i]
		if in.Protocol == "" {
			in.Protocol = DefaultProtocol
		}
		if in.PassIdentity == "" {
			in.PassIdentity = "xfcc"
			if in.Protocol == "tcp" {
				in.PassIdentity = "none"
			}
		}
		if in.Policy.Default == "" {
			in.Policy.Default = DefaultPolicy
		}
		for j := range in.Policy.Rules {
			r := &in.Policy.Rules[j]
			if r.Name == "" {
				r.Name = fmt.Sprintf("rule[%d]", j)
			}
			if r.Mode == "" {
				r.Mode = DefaultRuleMode
			}
			r.To = []string{in.Name}
		}
	}
}

// InboundPolicy builds the policy of inbound item i: its rules, each
// naming the item as its one route.
func (c *Config) InboundPolicy(i int) (*policy.Policy, error) {
	in := c.Inbound[i]
	sub := Config{Policy: in.Policy}
	return policy.New(in.Policy.DefaultAllow(), sub.PolicyRules(), policy.WithRouteProtocols(map[string]string{in.Name: in.Protocol}))
}

// validateInbound checks names, addresses and sockets unique, the protocol
// and pass_identity compatible, the identity one this node can issue, every
// caller's trust domain covered by a bundle, and each policy as policy.New
// sees it.
func (c *Config) validateInbound(ps *problems, bundles map[spiffeid.TrustDomain]bool) {
	names, addrs := map[string]int{}, map[string]int{}
	sockets := map[string]bool{c.Listen.Socket: true}
	for _, r := range c.Routes {
		if r.Socket != "" {
			sockets[r.Socket] = true
		}
	}
	for i, in := range c.Inbound {
		key := func(k string) string { return fmt.Sprintf("inbound[%d].%s", i, k) }
		if j, dup := names[in.Name]; dup {
			ps.add(in.Line, key("name"), "%q is already the name of inbound[%d] (line %d)", in.Name, j, c.Inbound[j].Line)
		} else {
			names[in.Name] = i
		}
		if j, dup := addrs[in.Listen]; dup {
			ps.add(in.Line, key("listen"), "%s is already the address of inbound[%d] (line %d)", in.Listen, j, c.Inbound[j].Line)
		} else {
			addrs[in.Listen] = i
		}
		if sockets[in.Service] {
			ps.add(in.Line, key("service"), "%s is one of procmesh's own sockets; name the local service's socket", in.Service)
		}
		switch {
		case in.PassIdentity == "xfcc" && in.Protocol == "tcp":
			ps.add(in.Line, key("pass_identity"), "xfcc is an HTTP header and protocol is tcp; use proxy-v2 or none")
		case in.PassIdentity == "proxy-v2" && in.Protocol != "tcp":
			ps.add(in.Line, key("pass_identity"), "proxy-v2 needs protocol tcp (an HTTP connection to the service carries requests of several callers); use xfcc")
		}
		if !c.TrustDomain.IsZero() && !in.Identity.IsZero() && !in.Identity.MemberOf(c.TrustDomain) {
			ps.add(in.Line, key("identity"), "%s is not in trust_domain %s; procmesh presents identities of its own trust domain", in.Identity, c.TrustDomain)
		} else if c.Identity.Provider != "spire" && !in.Identity.IsZero() && !c.hasWorkload(in.Identity) {
			ps.add(in.Line, key("identity"), "no workloads entry has spiffe_id %s; register the program that serves %s with it", in.Identity, in.Service)
		}
		for j, r := range in.Policy.Rules {
			for k, from := range r.From {
				if td := from.ID.TrustDomain(); !bundles[td] {
					ps.add(r.Line, fmt.Sprintf("inbound[%d].policy.rules[%d].from[%d]", i, j, k),
						"no trust bundle for trust domain %s; add it to trust_bundles, or callers from it cannot connect", td)
				}
			}
		}
		c.checkInboundRules(ps, i)
	}
}

func (c *Config) hasWorkload(id spiffeid.ID) bool {
	for _, w := range c.Workloads {
		if w.SPIFFEID == id {
			return true
		}
	}
	return false
}

// checkInboundRules reports what policy.New refuses in inbound item i's
// rules (a rule that can never decide, methods on a tcp listener).
func (c *Config) checkInboundRules(ps *problems, i int) {
	_, err := c.InboundPolicy(i)
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	rules := c.Inbound[i].Policy.Rules
	for _, err := range errs {
		re, ok := err.(*policy.RuleError)
		if !ok || re.Index < 0 || re.Index >= len(rules) {
			ps.add(c.Inbound[i].Line, fmt.Sprintf("inbound[%d].policy", i), "%v", err)
			continue
		}
		key := fmt.Sprintf("inbound[%d].policy.rules[%d]", i, re.Index)
		if re.Field != "" && re.Field != "to" {
			key += "." + re.Field
		}
		ps.add(rules[re.Index].Line, key, "%s", re.Reason)
	}
}
