// Package policy decides whether a workload may use a route.
//
// Policy v0 knows sources by exact SPIFFE ID and destinations by route name:
// each rule allows its `from` IDs to use its `to` routes, the first matching
// rule (in configuration order) decides, and the default (allow or deny)
// decides the rest. The package does not know where IDs come from (registry
// and attest) nor how routes are reached (proxy); it is a pure, immutable
// decision table. Methods, paths, headers and audit-mode rules come later and
// will extend Rule, Request and Decision without changing what v0 decides.
package policy

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultRule is the Decision.Rule reported when no rule matched.
const DefaultRule = "default"

// Rule allows every ID in From to use every route in To.
type Rule struct {
	Name string // shown in decisions and audit lines; "" becomes "rule[N]", N its index
	From []spiffeid.ID
	To   []string
}

// Request is what is being decided: may Source use Route?
type Request struct {
	Source spiffeid.ID // the calling process's SPIFFE ID
	Route  string      // the route's name
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow  bool
	Rule   string // the deciding rule's name, or DefaultRule
	Reason string // one human-readable sentence for logs and 403 bodies
}

// Policy is an immutable decision table, safe for concurrent use.
type Policy struct {
	defaultAllow bool
	// byRoute lists, per route, the rules naming it in configuration order.
	byRoute map[string][]*compiled
}

type compiled struct {
	name  string
	from  map[spiffeid.ID]struct{}
	allow Decision // precomputed so that allowing costs no allocation
}

// New builds a Policy. A rule with no From or no To, a zero From ID, an
// empty route name, or two rules with the same name is an error; all
// problems are reported, joined.
func New(defaultAllow bool, rules []Rule) (*Policy, error) {
	p := &Policy{defaultAllow: defaultAllow, byRoute: map[string][]*compiled{}}
	var errs []error
	names := map[string]int{}
	for i, r := range rules {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("rule[%d]", i)
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("policy: rule %q: %s", name, fmt.Sprintf(format, args...)))
		}
		if prev, ok := names[name]; ok {
			fail("name already used by rule[%d]", prev)
		}
		names[name] = i
		if len(r.From) == 0 {
			fail("no from IDs")
		}
		if len(r.To) == 0 {
			fail("no to routes")
		}
		c := &compiled{name: name, from: make(map[spiffeid.ID]struct{}, len(r.From))}
		c.allow = Decision{Allow: true, Rule: name, Reason: fmt.Sprintf("allowed by rule %q", name)}
		for _, id := range r.From {
			if id.IsZero() {
				fail("empty SPIFFE ID in from")
			}
			c.from[id] = struct{}{}
		}
		seen := map[string]bool{}
		for _, route := range r.To {
			if route == "" {
				fail("empty route name in to")
			}
			if seen[route] {
				continue
			}
			seen[route] = true
			p.byRoute[route] = append(p.byRoute[route], c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Decide returns the decision for req. A request without a source ID is
// denied whatever the default: policy never grants anything to a caller that
// has no identity.
func (p *Policy) Decide(req Request) Decision {
	if req.Source.IsZero() {
		return Decision{Rule: DefaultRule, Reason: fmt.Sprintf("caller has no SPIFFE ID; route %q needs one", req.Route)}
	}
	for _, c := range p.byRoute[req.Route] {
		if _, ok := c.from[req.Source]; ok {
			return c.allow
		}
	}
	if p.defaultAllow {
		return Decision{Allow: true, Rule: DefaultRule, Reason: "no rule matched; policy.default is allow"}
	}
	return Decision{Rule: DefaultRule, Reason: fmt.Sprintf(
		"no rule allows %s to use route %q and policy.default is deny", req.Source, req.Route)}
}
