package policy

import (
	"fmt"
	"net/textproto"
	"slices"
	"sort"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// compiled is a Rule checked and laid out for Decide.
type compiled struct {
	index     int
	name      string
	mode      Mode
	routes    []string // To without duplicates, in order
	anySource bool     // no From and no FromPrefix
	exact     map[spiffeid.ID]struct{}
	prefixes  []string // "spiffe://td/path/": an ID matches when it starts with one
	selectors []string
	methods   []string
	paths     []pathPattern
	headers   []header // sorted by name
	// requestLevel is set when the rule sets methods, paths or headers,
	// which connection-level requests do not have.
	requestLevel bool
	allow        Decision // precomputed so that allowing costs no allocation
}

type header struct{ name, value string }

// pathPattern is "/a/b" (exact) or "/a/*" (prefix "/a/").
type pathPattern struct {
	s      string // as written
	prefix bool
	match  string // the exact path, or the prefix ending in "/"
}

func (pp pathPattern) matches(path string) bool {
	if pp.prefix {
		return strings.HasPrefix(path, pp.match)
	}
	return path == pp.match
}

// covers reports whether every path pp matches is matched by q.
func (q pathPattern) covers(pp pathPattern) bool {
	if q.prefix {
		return strings.HasPrefix(pp.match, q.match)
	}
	return !pp.prefix && pp.match == q.match
}

// match returns "" when req meets every condition of c, else the first
// condition it fails, for Trace. It does not look at req.Route.
func (c *compiled) match(req *Request) string {
	if !c.anySource {
		if _, ok := c.exact[req.Source]; !ok && !hasPrefix(req.Source.String(), c.prefixes) {
			return "from"
		}
	}
	for _, s := range c.selectors {
		if !slices.Contains(req.Selectors, s) {
			return "selectors"
		}
	}
	if c.requestLevel && req.Connection {
		return "connection"
	}
	if len(c.methods) > 0 && !slices.Contains(c.methods, req.Method) {
		return "methods"
	}
	if len(c.paths) > 0 {
		ok := false
		for _, pp := range c.paths {
			if pp.matches(req.Path) {
				ok = true
				break
			}
		}
		if !ok {
			return "paths"
		}
	}
	for _, h := range c.headers {
		vs := req.Header[h.name]
		if len(vs) == 0 {
			return "headers"
		}
		for _, v := range vs {
			if v != h.value {
				return "headers"
			}
		}
	}
	return ""
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// ParsePattern reads a caller pattern as written in configuration: a SPIFFE
// ID ("spiffe://example.org/billing"), or an ID followed by "/*"
// ("spiffe://example.org/team-a/*", "spiffe://example.org/*") for every ID
// strictly under it. It returns the ID and whether it is a prefix; the ID
// must be canonical (THREATS I9) and, unless a prefix, have a path.
func ParsePattern(s string) (id spiffeid.ID, prefix bool, err error) {
	base, prefix := strings.CutSuffix(s, "/*")
	if strings.Contains(base, "*") {
		return spiffeid.ID{}, false, fmt.Errorf("policy: %q: * is only allowed as the whole last segment, like spiffe://example.org/team-a/*", s)
	}
	id, err = spiffeid.FromString(base)
	if err != nil {
		return spiffeid.ID{}, false, fmt.Errorf("policy: %q is not a canonical SPIFFE ID: %w", s, err)
	}
	if !prefix && id.Path() == "" {
		return spiffeid.ID{}, false, fmt.Errorf("policy: %s names a trust domain, not a workload; write %s/* for every ID in it", s, s)
	}
	return id, prefix, nil
}

// idPrefix is the string an ID under id starts with.
func idPrefix(id spiffeid.ID) string { return id.String() + "/" }

// compile checks r on its own and lays it out; every problem is returned.
func compile(i int, r Rule) (*compiled, []error) {
	name := r.Name
	if name == "" {
		name = fmt.Sprintf("rule[%d]", i)
	}
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &RuleError{Index: i, Name: name, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	c := &compiled{index: i, name: name, mode: r.Mode, exact: map[spiffeid.ID]struct{}{}}
	switch r.Mode {
	case Enforce:
		c.allow = Decision{Allow: true, Rule: name, Reason: fmt.Sprintf("allowed by rule %q", name)}
	case Audit:
		c.allow = Decision{Allow: true, Rule: name, Audit: true, Reason: fmt.Sprintf(
			"allowed by audit-mode rule %q only: no enforce rule allows it and policy.default is deny, so it is denied once that rule is removed", name)}
	default:
		fail("mode", "unknown mode %d", r.Mode)
	}

	if len(r.From) == 0 && len(r.FromPrefix) == 0 && len(r.Selectors) == 0 {
		fail("", "no callers: set from (SPIFFE IDs or prefixes) or selectors")
	}
	c.anySource = len(r.From) == 0 && len(r.FromPrefix) == 0
	for k, id := range r.From {
		switch {
		case id.IsZero():
			fail(fmt.Sprintf("from[%d]", k), "empty SPIFFE ID")
		case id.Path() == "":
			fail(fmt.Sprintf("from[%d]", k), "%s names a trust domain, not a workload; use it as a prefix for every ID in it", id)
		}
		c.exact[id] = struct{}{}
	}
	for k, id := range r.FromPrefix {
		if id.IsZero() {
			fail(fmt.Sprintf("from_prefix[%d]", k), "empty SPIFFE ID")
			continue
		}
		if p := idPrefix(id); !slices.Contains(c.prefixes, p) {
			c.prefixes = append(c.prefixes, p)
		}
	}
	for k, s := range r.Selectors {
		switch {
		case s == "":
			fail(fmt.Sprintf("selectors[%d]", k), "empty selector")
		case slices.Contains(c.selectors, s):
			fail(fmt.Sprintf("selectors[%d]", k), "%q is listed twice", s)
		default:
			c.selectors = append(c.selectors, s)
		}
	}

	if len(r.To) == 0 {
		fail("", "no to routes")
	}
	for k, route := range r.To {
		switch {
		case route == "":
			fail(fmt.Sprintf("to[%d]", k), "empty route name")
		case slices.Contains(c.routes, route):
			fail(fmt.Sprintf("to[%d]", k), "route %q is listed twice", route)
		default:
			c.routes = append(c.routes, route)
		}
	}

	for k, m := range r.Methods {
		field := fmt.Sprintf("methods[%d]", k)
		switch reason := MethodProblem(m); {
		case reason != "":
			fail(field, "%s", reason)
		case slices.Contains(c.methods, m):
			fail(field, "%s is listed twice", m)
		default:
			c.methods = append(c.methods, m)
		}
	}
	for k, s := range r.Paths {
		field := fmt.Sprintf("paths[%d]", k)
		pp, reason := parsePathPattern(s)
		switch {
		case reason != "":
			fail(field, "%s", reason)
		case slices.ContainsFunc(c.paths, func(q pathPattern) bool { return q.s == s }):
			fail(field, "%q is listed twice", s)
		default:
			c.paths = append(c.paths, pp)
		}
	}
	names := make([]string, 0, len(r.Headers))
	for n := range r.Headers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := r.Headers[n]
		field := "headers." + n
		canon := textproto.CanonicalMIMEHeaderKey(n)
		switch reason := HeaderProblem(n, v); {
		case reason != "":
			fail(field, "%s", reason)
		case slices.ContainsFunc(c.headers, func(h header) bool { return h.name == canon }):
			fail(field, "%s is set twice (header names are case-insensitive)", canon)
		default:
			c.headers = append(c.headers, header{canon, v})
		}
	}
	sort.Slice(c.headers, func(a, b int) bool { return c.headers[a].name < c.headers[b].name })
	c.requestLevel = len(c.methods) > 0 || len(c.paths) > 0 || len(c.headers) > 0
	return c, errs
}

// MethodProblem returns why m cannot be a rule's method, or "" when it can:
// an RFC 9110 token in upper case, not CONNECT.
func MethodProblem(m string) string {
	switch {
	case !isToken(m):
		return fmt.Sprintf("%q is not an HTTP method; write it like GET", m)
	case m == "CONNECT":
		return "CONNECT tunnels are connection-level, not requests: a rule without methods, paths and headers allows them"
	case strings.ToUpper(m) != m:
		return fmt.Sprintf("%q: methods are case-sensitive and standard ones upper case; write %s", m, strings.ToUpper(m))
	}
	return ""
}

// PathPatternProblem returns why s cannot be a rule's path pattern, or ""
// when it can: "/a/b" or "/a/*", in the form NormalizePath returns.
func PathPatternProblem(s string) string {
	_, reason := parsePathPattern(s)
	return reason
}

// HeaderProblem returns why a rule cannot require header name to have
// value, or "" when it can: name is a token that net/http leaves in
// Request.Header and the proxy forwards, and value is non-empty without
// control characters or surrounding spaces.
func HeaderProblem(name, value string) string {
	canon := textproto.CanonicalMIMEHeaderKey(name)
	switch {
	case !isToken(name):
		return fmt.Sprintf("%q is not a header name", name)
	case reservedHeader(canon):
		return fmt.Sprintf("%s is not passed to policy: %s", canon, reservedHeaderWhy(canon))
	case value == "":
		return "empty value; a header condition needs the exact value the header must have"
	case !validHeaderValue(value):
		return fmt.Sprintf("value %q has control characters or surrounding spaces; no request can carry it", value)
	}
	return ""
}

// parsePathPattern accepts "/a/b" and "/a/*", both already normalised.
func parsePathPattern(s string) (pathPattern, string) {
	base, prefix := strings.CutSuffix(s, "*")
	if prefix && !strings.HasSuffix(base, "/") || strings.Contains(base, "*") {
		return pathPattern{}, fmt.Sprintf("%q: * is only allowed as the whole last segment, like /public/*", s)
	}
	norm, err := NormalizePath(base)
	if err != nil {
		return pathPattern{}, fmt.Sprintf("%q: %s", s, err.(*PathError).Reason)
	}
	if norm != base {
		fix := norm
		if prefix {
			fix = strings.TrimSuffix(norm, "/") + "/*"
		}
		return pathPattern{}, fmt.Sprintf("%q is not normalised, so no request path equals it; write %q", s, fix)
	}
	return pathPattern{s: s, prefix: prefix, match: base}, ""
}

// reservedHeader reports header names that net/http moves out of Header
// or that the proxy consumes: a condition on them could never match.
func reservedHeader(canon string) bool { return reservedHeaderWhy(canon) != "" }

func reservedHeaderWhy(canon string) string {
	switch canon {
	case "Host":
		return "the host selects the route; name the route in to"
	case "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade":
		return "it is hop-by-hop: the proxy consumes it"
	case "Proxy-Authorization", "Proxy-Authenticate":
		return "it is addressed to the proxy, which uses process identity instead"
	}
	return ""
}

// isToken reports whether s is an RFC 9110 token (method and header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue: no control characters and no leading or trailing
// whitespace (net/http trims it, so such a value never arrives).
func validHeaderValue(v string) bool {
	if v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
