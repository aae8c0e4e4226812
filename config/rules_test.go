package config

import (
	"reflect"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
)

// routes2 is an HTTP route (echo) and a tcp route (db).
const routes2 = route + "  - {name: db, host: db.test, upstream: \"127.0.0.1:5432\", server_id: spiffe://example.org/db, protocol: tcp}\n"

func rules(yaml string) string {
	return "trust_domain: example.org\n" + routes2 + "policy:\n  rules:\n" + yaml
}

// TestRuleErrors compares the exact message for each malformed condition.
func TestRuleErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		// Callers.
		{"no callers", rules("    - {to: [echo]}\n"),
			`test.yaml:7: policy.rules[0]: missing required key "from" (callers' SPIFFE IDs or prefixes, like ["spiffe://example.org/billing", "spiffe://example.org/team-a/*"]; or set selectors)`},
		{"empty callers", rules("    - {from: [], selectors: [], to: [echo]}\n"),
			"test.yaml:7: policy.rules[0]: no callers: list SPIFFE IDs or prefixes in from, or selectors"},
		{"star inside", rules("    - {from: [\"spiffe://example.org/team-*\"], to: [echo]}\n"),
			`test.yaml:7: policy.rules[0].from[0]: "spiffe://example.org/team-*": * is only allowed as the whole last segment, like spiffe://example.org/team-a/*`},
		{"trust domain without /*", rules("    - {from: [\"spiffe://example.org\"], to: [echo]}\n"),
			"test.yaml:7: policy.rules[0].from[0]: spiffe://example.org names a trust domain, not a workload; write spiffe://example.org/* for every ID in it"},
		{"prefix uppercase trust domain", rules("    - {from: [\"spiffe://Example.org/a/*\"], to: [echo]}\n"),
			`test.yaml:7: policy.rules[0].from[0]: "spiffe://Example.org/a/*" is not a canonical SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores; write it as spiffe://example.org/a/*`},
		{"prefix in other trust domain", rules("    - {from: [\"spiffe://other.org/*\"], to: [echo]}\n"),
			"test.yaml:7: policy.rules[0].from[0]: spiffe://other.org/* is not in trust_domain example.org; rules name callers on this node, whose IDs are in trust_domain"},
		{"bad selector", rules("    - {selectors: [unix:uid:bob], to: [echo]}\n"),
			`test.yaml:7: policy.rules[0].selectors[0]: "unix:uid:bob": uid must be a decimal number without leading zeros, like unix:uid:1000; use unix:user:bob for a user name`},
		{"selector twice", rules("    - {selectors: [unix:uid:1, unix:uid:1], to: [echo]}\n"),
			`test.yaml:7: policy.rules[0].selectors[1]: "unix:uid:1" is listed twice`},
		{"contradicting selectors", rules("    - {selectors: [unix:uid:1, unix:uid:2], to: [echo]}\n"),
			`test.yaml:7: policy.rules[0].selectors: can never match: a process has one unix:uid, and the rule asks for both "1" and "2"`},
		// Destinations.
		{"route twice", rules("    - {from: [spiffe://example.org/a], to: [echo, echo]}\n"),
			`test.yaml:7: policy.rules[0].to[1]: route "echo" is listed twice`},
		{"lower-case method", rules("    - {from: [spiffe://example.org/a], to: [echo], methods: [get]}\n"),
			`test.yaml:7: policy.rules[0].methods[0]: "get": methods are case-sensitive and standard ones upper case; write GET`},
		{"CONNECT method", rules("    - {from: [spiffe://example.org/a], to: [echo], methods: [CONNECT]}\n"),
			"test.yaml:7: policy.rules[0].methods[0]: CONNECT tunnels are connection-level, not requests: a rule without methods, paths and headers allows them"},
		{"method twice", rules("    - {from: [spiffe://example.org/a], to: [echo], methods: [GET, GET]}\n"),
			`test.yaml:7: policy.rules[0].methods[1]: "GET" is listed twice`},
		{"path not normal", rules("    - from: [spiffe://example.org/a]\n      to: [echo]\n      paths:\n        - /ok\n        - /public/../admin/*\n"),
			`test.yaml:11: policy.rules[0].paths[1]: "/public/../admin/*" is not normalised, so no request path equals it; write "/admin/*"`},
		{"path glob", rules("    - {from: [spiffe://example.org/a], to: [echo], paths: [\"/public*\"]}\n"),
			`test.yaml:7: policy.rules[0].paths[0]: "/public*": * is only allowed as the whole last segment, like /public/*`},
		{"path encoded slash", rules("    - {from: [spiffe://example.org/a], to: [echo], paths: [\"/a%2Fb\"]}\n"),
			`test.yaml:7: policy.rules[0].paths[0]: "/a%2Fb": encoded slash (%2F): upstreams disagree on whether it separates segments`},
		{"headers not a mapping", rules("    - {from: [spiffe://example.org/a], to: [echo], headers: [x-env]}\n"),
			"test.yaml:7: policy.rules[0].headers: expected a mapping of header names to values, like {x-env: prod}, got a list"},
		{"header value not a string", rules("    - from: [spiffe://example.org/a]\n      to: [echo]\n      headers:\n        x-version: 2\n"),
			`test.yaml:10: policy.rules[0].headers.x-version: expected a string, got integer 2; quote it: "2"`},
		{"header twice", rules("    - from: [spiffe://example.org/a]\n      to: [echo]\n      headers:\n        x-env: prod\n        X-Env: prod\n"),
			"test.yaml:11: policy.rules[0].headers.X-Env: X-Env is already set at line 10 (header names are case-insensitive)"},
		{"host header", rules("    - {from: [spiffe://example.org/a], to: [echo], headers: {host: echo.test}}\n"),
			"test.yaml:7: policy.rules[0].headers.host: Host is not passed to policy: the host selects the route; name the route in to"},
		{"empty header value", rules("    - {from: [spiffe://example.org/a], to: [echo], headers: {x-env: \"\"}}\n"),
			"test.yaml:7: policy.rules[0].headers.x-env: empty value; a header condition needs the exact value the header must have"},
		{"mode", rules("    - {from: [spiffe://example.org/a], to: [echo], mode: shadow}\n"),
			`test.yaml:7: policy.rules[0].mode: "shadow" is not one of enforce, audit`},

		// Reachability, found by policy.New, reported at the rule's line.
		{"shadowed rule", rules("    - {name: broad, from: [\"spiffe://example.org/team/*\"], to: [echo]}\n    - name: narrow\n      from: [spiffe://example.org/team/web]\n      to: [echo]\n      methods: [GET]\n"),
			`test.yaml:8: policy.rules[1]: unreachable: every request it matches is decided first by rule "broad"; remove it or narrow the earlier rule (policy.rules[0] at line 7)`},
		{"audit copy of an enforce rule", rules("    - {name: a, from: [spiffe://example.org/a], to: [echo], mode: audit}\n    - {name: b, from: [spiffe://example.org/a], to: [echo]}\n"),
			`test.yaml:7: policy.rules[0]: unreachable: every request it matches is decided first by rule "b" (enforce rules are tried before audit-mode rules); remove it or narrow the earlier rule (policy.rules[1] at line 8)`},
		{"paths on a tcp route", rules("    - {from: [spiffe://example.org/a], to: [db], paths: [/x]}\n"),
			"test.yaml:7: policy.rules[0]: never matches: route db is protocol tcp, which carries connections with no method, path or headers, so a rule that sets them never matches there"},
		{"methods on a tcp and an HTTP route", rules("    - {from: [spiffe://example.org/a], to: [echo, db], methods: [GET]}\n"),
			"test.yaml:7: policy.rules[0].to: route db is protocol tcp, which carries connections with no method, path or headers, so a rule that sets them never matches there; remove db from to, or give it a rule of its own without methods, paths and headers"},
		{"audit under default allow", "trust_domain: example.org\n" + routes2 + "policy:\n  default: allow\n  rules:\n    - {from: [spiffe://example.org/a], to: [echo], mode: audit}\n",
			"test.yaml:8: policy.rules[0].mode: mode audit has no effect under policy.default allow: nothing it matches would be denied; make it enforce or remove it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseErr(t, tc.src); got != tc.want {
				t.Fatalf("error\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestRuleModes: rules decode to policy rules that decide as written,
// audit mode and prefixes included.
func TestRuleModes(t *testing.T) {
	src := rules("    - name: narrow\n      from: [\"spiffe://example.org/team/*\"]\n      to: [echo]\n      methods: [GET]\n      paths: [\"/public/*\"]\n" +
		"    - {name: legacy, from: [\"spiffe://example.org/team/*\", spiffe://example.org/ops], selectors: [unix:uid:1000], to: [echo, db], mode: audit}\n")
	c, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := c.PolicyRules()
	want := []policy.Rule{
		{Name: "narrow", FromPrefix: ids("team"), To: []string{"echo"}, Methods: []string{"GET"}, Paths: []string{"/public/*"}},
		{Name: "legacy", From: ids("ops"), FromPrefix: ids("team"), Selectors: []string{"unix:uid:1000"}, To: []string{"echo", "db"}, Mode: policy.Audit},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PolicyRules\n got %+v\nwant %+v", got, want)
	}
	if p := c.RouteProtocols(); !reflect.DeepEqual(p, map[string]string{"echo": "http1", "db": "tcp"}) {
		t.Fatalf("RouteProtocols = %v", p)
	}
	pol, err := policy.New(c.Policy.DefaultAllow(), got, policy.WithRouteProtocols(c.RouteProtocols()))
	if err != nil {
		t.Fatal(err)
	}
	d := pol.Decide(policy.Request{Source: sid("spiffe://example.org/team/web"), Selectors: []string{"unix:uid:1000"},
		Route: "echo", Method: "POST", Path: "/admin"})
	if d.Verdict() != "audit" || d.Rule != "legacy" {
		t.Fatalf("decision %+v", d)
	}
	if s := c.Policy.Rules[1].From[1].String() + " " + c.Policy.Rules[1].From[0].String(); s != "spiffe://example.org/ops spiffe://example.org/team/*" {
		t.Fatalf("Caller.String: %s", s)
	}
}

// TestValidateRulesBuiltInCode: Validate runs the reachability check on a
// Config built without Parse too, without lines.
func TestValidateRulesBuiltInCode(t *testing.T) {
	c := &Config{
		TrustDomain: td("example.org"),
		Routes:      []Route{{Name: "echo", Host: "echo.test", Upstream: "h:1", ServerID: sid("spiffe://example.org/e"), Protocol: "http1"}},
		Policy: Policy{Default: "deny", Rules: []Rule{
			{Name: "a", From: []Caller{{ID: sid("spiffe://example.org/a")}}, To: []string{"echo"}},
			{Name: "b", From: []Caller{{ID: sid("spiffe://example.org/a")}}, To: []string{"echo"}, Methods: []string{"get"}},
			{Name: "c", From: []Caller{{ID: sid("spiffe://example.org/a")}}, To: []string{"echo"}},
		}},
	}
	want := `policy.rules[1].methods[0]: "get": methods are case-sensitive and standard ones upper case; write GET`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate\n got %v\nwant %s", err, want)
	}
	c.Policy.Rules[1].Methods = []string{"GET"}
	want = `policy.rules[1]: unreachable: every request it matches is decided first by rule "a"; remove it or narrow the earlier rule (policy.rules[0])` + "\n" +
		`policy.rules[2]: unreachable: every request it matches is decided first by rule "a"; remove it or narrow the earlier rule (policy.rules[0])`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate\n got %v\nwant %s", err, want)
	}
}

func ids(paths ...string) []spiffeid.ID {
	out := make([]spiffeid.ID, len(paths))
	for i, p := range paths {
		out[i] = sid("spiffe://example.org/" + p)
	}
	return out
}

// TestExampleDecides: the example's policy decides as its comments say.
func TestExampleDecides(t *testing.T) {
	c, err := Load("../configs/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(c.Policy.DefaultAllow(), c.PolicyRules(), policy.WithRouteProtocols(c.RouteProtocols()))
	if err != nil {
		t.Fatal(err)
	}
	billing := sid("spiffe://example.org/billing")
	h := map[string][]string{"X-Env": {"prod"}}
	for _, tc := range []struct {
		req     policy.Request
		verdict string
	}{
		{policy.Request{Source: billing, Route: "echo", Method: "GET", Path: "/public/x", Header: h}, "allow"},
		{policy.Request{Source: billing, Route: "echo", Method: "POST", Path: "/public/x", Header: h}, "audit"},
		{policy.Request{Source: billing, Route: "echo", Connection: true}, "audit"},
		{policy.Request{Source: billing, Route: "db", Connection: true}, "allow"},
		{policy.Request{Source: sid("spiffe://example.org/reports"), Route: "echo", Method: "GET", Path: "/health", Header: h}, "deny"},
	} {
		if d := pol.Decide(tc.req); d.Verdict() != tc.verdict {
			t.Errorf("%s %s %s: %+v; want %s", tc.req.Source, tc.req.Route, tc.req.Path, d, tc.verdict)
		}
	}
}
