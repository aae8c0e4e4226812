package policy

import (
	"errors"
	"fmt"
	"strings"
)

// RuleError is a problem with one rule: a malformed condition, a duplicate
// name, a route that does not exist, or a rule that can never decide a
// request (unreachable). Index is the rule's position in New's rules so that
// callers can point at where it was written.
type RuleError struct {
	Index  int    // the rule's index in New's rules
	Name   string // the rule's name ("rule[N]" when it has none)
	Field  string // the condition at fault ("methods[1]", "headers.X-Env", "to[0]"); "" for the rule as a whole
	Reason string // what is wrong and what to do
	// Unreachable is set when the rule can never decide a request: it
	// could be deleted without changing any decision.
	Unreachable bool
	// By lists, for an unreachable rule, the indexes of the rules that
	// decide its requests before it.
	By []int
}

func (e *RuleError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("policy: rule %q: %s: %s", e.Name, e.Field, e.Reason)
	}
	return fmt.Sprintf("policy: rule %q: %s", e.Name, e.Reason)
}

// Option configures New.
type Option func(*options)

type options struct {
	protocols map[string]string
}

// WithRouteProtocols gives New each route's protocol (tcp, http1, http2,
// http3, auto) by route name. New then also rejects rules naming routes
// that are not in it, and rules that set methods, paths or headers for a
// tcp route, which only ever carries connections.
func WithRouteProtocols(protocols map[string]string) Option {
	return func(o *options) { o.protocols = protocols }
}

// New checks rules and builds a Policy. Every problem is reported, joined,
// each a *RuleError: malformed conditions, two rules with the same name,
// unknown routes (with WithRouteProtocols), and rules that can never decide
// a request:
//
//   - a rule whose every request an earlier rule already matches, on every
//     one of its routes: an enforce rule by an earlier enforce rule, an
//     audit-mode rule by any enforce rule (enforce rules decide first) or an
//     earlier audit-mode rule. An audit-mode rule identical to an enforce
//     rule is the simplest case. Only single rules are compared: a rule
//     covered by the union of several earlier ones is not reported.
//   - a rule that sets methods, paths or headers for a tcp route (see
//     WithRouteProtocols);
//   - an audit-mode rule when the default is allow: nothing would be denied.
func New(defaultAllow bool, rules []Rule, opts ...Option) (*Policy, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &Policy{
		defaultAllow: defaultAllow,
		byRoute:      map[string][]*compiled{},
		protocols:    o.protocols,
		allowDef:     Decision{Allow: true, Rule: DefaultRule, Reason: "no rule matched; policy.default is allow"},
	}
	var errs []error
	names := map[string]int{}
	for i, r := range rules {
		c, cerrs := compile(i, r)
		errs = append(errs, cerrs...)
		if prev, dup := names[c.name]; dup {
			errs = append(errs, &RuleError{Index: i, Name: c.name, Field: "name", Reason: fmt.Sprintf("name already used by rule[%d]", prev)})
		} else {
			names[c.name] = i
		}
		if p.protocols != nil {
			for k, route := range r.To {
				if _, ok := p.protocols[route]; !ok && route != "" {
					errs = append(errs, &RuleError{Index: i, Name: c.name, Field: fmt.Sprintf("to[%d]", k), Reason: fmt.Sprintf("no route named %q", route)})
				}
			}
		}
		p.rules = append(p.rules, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if errs := p.unreachable(); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.index()
	return p, nil
}

// index fills byRoute: per route, enforce rules then audit rules.
func (p *Policy) index() {
	for _, mode := range []Mode{Enforce, Audit} {
		for _, c := range p.rules {
			if c.mode != mode {
				continue
			}
			for _, route := range c.routes {
				p.byRoute[route] = append(p.byRoute[route], c)
			}
		}
	}
}

// decidesBefore reports whether i is tried before j (given both match).
func decidesBefore(i, j *compiled) bool {
	if i.mode != j.mode {
		return i.mode == Enforce
	}
	return i.index < j.index
}

// covers reports whether c matches every request d matches, routes aside.
// It is sound, not complete: true only when it is sure.
func (c *compiled) covers(d *compiled) bool {
	if !c.anySource {
		if d.anySource {
			return false
		}
		for id := range d.exact {
			if _, ok := c.exact[id]; !ok && !hasPrefix(id.String(), c.prefixes) {
				return false
			}
		}
		for _, pre := range d.prefixes {
			if !hasPrefix(pre, c.prefixes) {
				return false
			}
		}
	}
	for _, s := range c.selectors {
		if !contains(d.selectors, s) {
			return false
		}
	}
	if len(c.methods) > 0 {
		if len(d.methods) == 0 {
			return false
		}
		for _, m := range d.methods {
			if !contains(c.methods, m) {
				return false
			}
		}
	}
	if len(c.paths) > 0 {
		if len(d.paths) == 0 {
			return false
		}
		for _, pp := range d.paths {
			covered := false
			for _, q := range c.paths {
				if q.covers(pp) {
					covered = true
					break
				}
			}
			if !covered {
				return false
			}
		}
	}
	for _, h := range c.headers {
		found := false
		for _, g := range d.headers {
			if g == h {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// unreachable reports every rule that can never decide a request.
func (p *Policy) unreachable() []error {
	var errs []error
	for _, d := range p.rules {
		fail := func(field string, dead bool, format string, args ...any) {
			errs = append(errs, &RuleError{Index: d.index, Name: d.name, Field: field, Unreachable: dead, Reason: fmt.Sprintf(format, args...)})
		}
		if d.mode == Audit && p.defaultAllow {
			fail("mode", true, "mode audit has no effect under policy.default allow: nothing it matches would be denied; make it enforce or remove it")
			continue
		}
		var tcp, live []string
		var by []int
		for _, route := range d.routes {
			if d.requestLevel && p.protocols[route] == "tcp" {
				tcp = append(tcp, route)
				continue
			}
			coveredBy := -1
			for _, c := range p.rules {
				if c != d && decidesBefore(c, d) && contains(c.routes, route) && c.covers(d) {
					coveredBy = c.index
					break
				}
			}
			if coveredBy < 0 {
				live = append(live, route)
			} else if !containsInt(by, coveredBy) {
				by = append(by, coveredBy)
			}
		}
		tcpNote := ""
		if len(tcp) > 0 {
			tcpNote = fmt.Sprintf("route%s %s %s protocol tcp, which carries connections with no method, path or headers, so a rule that sets them never matches there",
				plural(len(tcp)), strings.Join(tcp, ", "), isAre(len(tcp)))
		}
		switch {
		case len(live) > 0 && len(tcp) > 0:
			fail("to", false, "%s; remove %s from to, or give %s a rule of %s own without methods, paths and headers",
				tcpNote, strings.Join(tcp, ", "), itThem(len(tcp)), itsTheir(len(tcp)))
		case len(live) > 0:
		case len(by) == 0:
			fail("", true, "never matches: %s", tcpNote)
		default:
			names := make([]string, len(by))
			for k, i := range by {
				names[k] = fmt.Sprintf("%q", p.rules[i].name)
			}
			reason := fmt.Sprintf("unreachable: every request it matches is decided first by rule %s", strings.Join(names, " and "))
			if d.mode == Audit && p.rules[by[0]].mode == Enforce {
				reason += " (enforce rules are tried before audit-mode rules)"
			}
			if tcpNote != "" {
				reason += "; and " + tcpNote
			}
			errs = append(errs, &RuleError{Index: d.index, Name: d.name, Unreachable: true, By: by,
				Reason: reason + "; remove it or narrow the earlier rule"})
		}
	}
	return errs
}

func containsInt(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func itThem(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

func itsTheir(n int) string {
	if n == 1 {
		return "its"
	}
	return "their"
}
