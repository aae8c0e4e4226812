// Package policy decides whether a workload may make a request or open a
// connection through a route.
//
// A policy is an ordered list of allow rules and a default. A rule names its
// callers (exact SPIFFE IDs, ID path prefixes such as
// spiffe://example.org/team-a/*, and selectors the calling process must
// have) and what they may reach (route names, and for HTTP requests
// methods, normalised paths and header values). Every condition a rule sets
// must hold; a rule allows, there are no deny rules: what no rule allows,
// the default decides.
//
// Evaluation. Enforce-mode rules are tried in configuration order and the
// first that matches allows. When none matches, audit-mode rules are tried in
// order: the first that matches allows too, but the Decision says Audit, and
// the request is one that would be denied once the audit-mode rules are
// removed. Otherwise the default decides. So an audit-mode rule is a rule on
// its way out, kept to roll out a restriction without breaking callers:
// narrow enforce rules go in, the old broad rule becomes mode: audit, every
// request that still depends on it is logged as "audit" (allowed, would be
// denied), and once such lines stop it can be deleted. Switching
// policy.default from allow to deny works the same way with one catch-all
// audit rule. An audit-mode rule is therefore a grant, not a dry run of one:
// it does allow. Under default allow nothing is denied, so audit-mode rules
// never decide (New reports them as unreachable).
//
// Requests and connections. An HTTP request carries a method, a path and
// headers; a connection-level request (a CONNECT tunnel or a route's raw
// socket) has none of them, so a rule that sets methods, paths or headers
// never matches a connection: a route stays closed to tunnels unless a rule
// without those conditions allows it. New reports such a rule naming a
// protocol tcp route, which only ever sees connections.
//
// Paths are compared after NormalizePath, which the proxy applies before
// deciding and whose result it forwards upstream, so that the policy and the
// upstream see the same path. A path pattern is exact ("/a/b") or a prefix
// ending in "/*": "/public/*" matches "/public/" and every path below it,
// not "/public" nor "/publicity". Paths are case-sensitive.
//
// Header conditions name a header and one value; a request matches when it
// has the header and every one of its field lines equals the value exactly
// (no comma splitting, no case folding of values). Requiring every line, not
// any, closes the bypass where a caller sends the required value and a
// second one that the upstream reads instead.
//
// The package does not know where IDs and selectors come from (attest,
// registry) nor how routes are reached (proxy); a Policy is an immutable
// decision table, safe for concurrent use, whose allow decisions cost no
// allocation.
package policy

import (
	"fmt"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultRule is the Decision.Rule reported when no rule matched.
const DefaultRule = "default"

// Mode says whether a rule is enforced or kept in audit mode.
type Mode uint8

const (
	// Enforce rules allow what they match.
	Enforce Mode = iota
	// Audit rules allow what they match only when no enforce rule does, and
	// mark the decision as one the policy would deny without them.
	Audit
)

func (m Mode) String() string {
	switch m {
	case Enforce:
		return "enforce"
	case Audit:
		return "audit"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Rule allows its callers to reach its routes. Every condition set must
// hold; an empty list (or map) sets no condition, except that a rule needs
// at least one of From, FromPrefix or Selectors, and at least one route.
type Rule struct {
	Name string // shown in decisions and audit lines; "" becomes "rule[N]", N its index

	// Callers: the caller's ID is one of From or strictly under one of
	// FromPrefix (the ID of spiffe://example.org/team-a matches
	// spiffe://example.org/team-a/x and below, not .../team-a itself nor
	// .../team-abc; a trust domain's ID, spiffe://example.org, matches every
	// ID in it), and the calling process has every selector in Selectors
	// ("unix:uid:1000"). With From and FromPrefix both empty, any caller
	// with an ID and the selectors matches. ParsePattern reads the written
	// form "spiffe://example.org/team-a/*".
	From       []spiffeid.ID
	FromPrefix []spiffeid.ID
	Selectors  []string

	To []string // route names

	// HTTP conditions; a rule setting any never matches connections.
	Methods []string          // upper case, e.g. GET; empty = any
	Paths   []string          // normalised: "/a/b" exact, "/a/*" prefix; empty = any
	Headers map[string]string // header name (any case) → the exact value

	Mode Mode
}

// Request is what is being decided.
type Request struct {
	Source    spiffeid.ID // the calling process's SPIFFE ID
	Selectors []string    // the calling process's selectors
	Route     string      // the route's name

	// Connection is set for CONNECT tunnels and raw sockets, which have no
	// method, path or headers: only rules without such conditions match.
	Connection bool
	Method     string      // as sent, case-sensitive
	Path       string      // the request path as returned by NormalizePath, without query
	Header     http.Header // canonical keys, as net/http builds them
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow bool
	// Rule is the deciding rule's name, or DefaultRule.
	Rule string
	// Audit is set when the audit-mode rule Rule allowed a request that no
	// enforce rule allows and the default denies: allowed now, denied once
	// the audit-mode rules are gone. Allow is then true.
	Audit bool
	// Reason is one human-readable sentence for logs and 403 bodies.
	Reason string
}

// Verdict is the decision as one word for audit lines: "allow", "deny", or
// "audit" (allowed by an audit-mode rule only; see Decision.Audit).
func (d Decision) Verdict() string {
	switch {
	case d.Audit:
		return "audit"
	case d.Allow:
		return "allow"
	}
	return "deny"
}

// Policy is an immutable decision table, safe for concurrent use.
type Policy struct {
	defaultAllow bool
	rules        []*compiled
	// byRoute lists, per route, the enforce rules then the audit rules
	// naming it, each in configuration order.
	byRoute   map[string][]*compiled
	protocols map[string]string // nil when New was given none
	allowDef  Decision
}

// Decide returns the decision for req. A request without a source ID is
// denied whatever the rules and default: policy never grants anything to a
// caller that has no identity.
func (p *Policy) Decide(req Request) Decision {
	if req.Source.IsZero() {
		return Decision{Rule: DefaultRule, Reason: fmt.Sprintf("caller has no SPIFFE ID; route %q needs one", req.Route)}
	}
	for _, c := range p.byRoute[req.Route] {
		if c.match(&req) == "" {
			// Enforce rules come first: the first match is the
			// first enforce rule that matches, if any, and audit
			// rules are reached only without one.
			if c.mode == Audit && p.defaultAllow {
				break
			}
			return c.allow
		}
	}
	if p.defaultAllow {
		return p.allowDef
	}
	return Decision{Rule: DefaultRule, Reason: denyReason(&req)}
}

// denyReason names the source and what it asked for.
func denyReason(req *Request) string {
	if req.Connection {
		return fmt.Sprintf("no rule allows %s to connect to route %q and policy.default is deny "+
			"(a tunnel or raw connection has no method, path or headers: rules that set them do not apply)",
			req.Source, req.Route)
	}
	return fmt.Sprintf("no rule allows %s to %s %s on route %q and policy.default is deny",
		req.Source, printable(req.Method), printable(req.Path), req.Route)
}

// printable quotes s when it would be ambiguous or empty in a sentence.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' {
			return fmt.Sprintf("%q", s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// DefaultAllow reports the policy's default.
func (p *Policy) DefaultAllow() bool { return p.defaultAllow }
