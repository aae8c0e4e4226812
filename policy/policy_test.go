package policy

import (
	"net/http"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func id(path string) spiffeid.ID { return spiffeid.RequireFromString("spiffe://example.org/" + path) }

func ids(paths ...string) []spiffeid.ID {
	out := make([]spiffeid.ID, len(paths))
	for i, p := range paths {
		out[i] = id(p)
	}
	return out
}

func strs(s ...string) []string { return s }

func mustNew(t testing.TB, defaultAllow bool, rules []Rule, opts ...Option) *Policy {
	t.Helper()
	p, err := New(defaultAllow, rules, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// get is an HTTP request from source to route.
func get(source, route, method, path string, hdr ...string) Request {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Add(hdr[i], hdr[i+1])
	}
	return Request{Source: id(source), Route: route, Method: method, Path: path, Header: h}
}

// conn is a connection-level request (CONNECT tunnel or raw socket).
func conn(source, route string) Request {
	return Request{Source: id(source), Route: route, Connection: true}
}

func withSelectors(r Request, sel ...string) Request { r.Selectors = sel; return r }

// TestDecide: one policy exercising every condition; each case says which
// rule must decide (or "default" and the deny reason).
func TestDecide(t *testing.T) {
	rules := []Rule{
		{Name: "billing-echo", From: ids("billing"), To: strs("echo")},
		{From: ids("billing", "reports"), To: strs("db", "echo")}, // unnamed: rule[1]
		{Name: "team-a-read", FromPrefix: ids("team-a"), To: strs("echo"),
			Methods: strs("GET", "HEAD"), Paths: strs("/public/*", "/health")},
		{Name: "team-a-prod-write", FromPrefix: ids("team-a"), To: strs("echo"),
			Methods: strs("POST"), Paths: strs("/orders"), Headers: map[string]string{"x-env": "prod"}},
		{Name: "uid-1000", Selectors: strs("unix:uid:1000", "unix:path:/usr/bin/tool"), To: strs("echo")},
		{Name: "ops-with-selector", From: ids("ops"), Selectors: strs("unix:uid:0"), To: strs("db")},
		{Name: "whole-domain-health", FromPrefix: []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org")},
			To: strs("db"), Paths: strs("/healthz")},
		{Name: "tcp-ok", FromPrefix: ids("team-a"), To: strs("db")},
	}
	p := mustNew(t, false, rules)
	allow := func(rule string) Decision {
		return Decision{Allow: true, Rule: rule, Reason: `allowed by rule "` + rule + `"`}
	}
	deny := func(reason string) Decision { return Decision{Rule: DefaultRule, Reason: reason} }
	tests := []struct {
		name string
		req  Request
		want Decision
	}{
		// Sources: exact IDs.
		{"first matching rule decides", get("billing", "echo", "GET", "/"), allow("billing-echo")},
		{"unnamed rule is rule[N]", get("billing", "db", "GET", "/"), allow("rule[1]")},
		{"earlier rule shadows later", get("reports", "echo", "DELETE", "/admin"), allow("rule[1]")},
		{"unknown source denied", get("intruder", "echo", "GET", "/"),
			deny(`no rule allows spiffe://example.org/intruder to GET / on route "echo" and policy.default is deny`)},
		{"unknown route denied", get("billing", "nope", "GET", "/x"),
			deny(`no rule allows spiffe://example.org/billing to GET /x on route "nope" and policy.default is deny`)},
		{"ID in another trust domain is another ID",
			Request{Source: spiffeid.RequireFromString("spiffe://other.org/billing"), Route: "echo", Method: "GET", Path: "/"},
			deny(`no rule allows spiffe://other.org/billing to GET / on route "echo" and policy.default is deny`)},
		{"exact ID does not match a child", get("billing/v2", "echo", "GET", "/"),
			deny(`no rule allows spiffe://example.org/billing/v2 to GET / on route "echo" and policy.default is deny`)},

		// Sources: prefixes.
		{"prefix matches a child", get("team-a/web", "echo", "GET", "/public/x"), allow("team-a-read")},
		{"prefix matches a grandchild", get("team-a/web/canary", "echo", "GET", "/health"), allow("team-a-read")},
		{"prefix does not match the ID itself", get("team-a", "echo", "GET", "/public/x"),
			deny(`no rule allows spiffe://example.org/team-a to GET /public/x on route "echo" and policy.default is deny`)},
		{"prefix does not match a longer segment", get("team-abc/x", "echo", "GET", "/public/x"),
			deny(`no rule allows spiffe://example.org/team-abc/x to GET /public/x on route "echo" and policy.default is deny`)},
		{"prefix is case-sensitive", get("Team-a/x", "echo", "GET", "/public/x"),
			deny(`no rule allows spiffe://example.org/Team-a/x to GET /public/x on route "echo" and policy.default is deny`)},
		{"trust-domain prefix matches any ID in it", get("anyone", "db", "GET", "/healthz"), allow("whole-domain-health")},

		// Methods.
		{"second listed method", get("team-a/web", "echo", "HEAD", "/health"), allow("team-a-read")},
		{"method not listed", get("team-a/web", "echo", "DELETE", "/public/x"),
			deny(`no rule allows spiffe://example.org/team-a/web to DELETE /public/x on route "echo" and policy.default is deny`)},
		{"methods are case-sensitive", get("team-a/web", "echo", "get", "/public/x"),
			deny(`no rule allows spiffe://example.org/team-a/web to get /public/x on route "echo" and policy.default is deny`)},

		// Paths (normalised paths; bypasses are in TestThreat_PathBypass).
		{"prefix pattern matches its directory", get("team-a/web", "echo", "GET", "/public/"), allow("team-a-read")},
		{"prefix pattern does not match the bare name", get("team-a/web", "echo", "GET", "/public"),
			deny(`no rule allows spiffe://example.org/team-a/web to GET /public on route "echo" and policy.default is deny`)},
		{"prefix pattern does not match a longer name", get("team-a/web", "echo", "GET", "/publicity"),
			deny(`no rule allows spiffe://example.org/team-a/web to GET /publicity on route "echo" and policy.default is deny`)},
		{"exact path", get("team-a/web", "echo", "GET", "/health"), allow("team-a-read")},
		{"exact path is not a prefix", get("team-a/web", "echo", "GET", "/health/x"),
			deny(`no rule allows spiffe://example.org/team-a/web to GET /health/x on route "echo" and policy.default is deny`)},
		{"exact path: trailing slash differs", get("team-a/web", "echo", "GET", "/health/"),
			deny(`no rule allows spiffe://example.org/team-a/web to GET /health/ on route "echo" and policy.default is deny`)},
		{"paths are case-sensitive", get("team-a/web", "echo", "GET", "/PUBLIC/x"),
			deny(`no rule allows spiffe://example.org/team-a/web to GET /PUBLIC/x on route "echo" and policy.default is deny`)},
		{"empty path matches no path rule", get("team-a/web", "echo", "GET", ""),
			deny(`no rule allows spiffe://example.org/team-a/web to GET "" on route "echo" and policy.default is deny`)},

		// Headers.
		{"header present with the value", get("team-a/web", "echo", "POST", "/orders", "X-Env", "prod"), allow("team-a-prod-write")},
		{"header name case does not matter", get("team-a/web", "echo", "POST", "/orders", "x-ENV", "prod"), allow("team-a-prod-write")},
		{"header repeated with the same value", get("team-a/web", "echo", "POST", "/orders", "X-Env", "prod", "X-Env", "prod"), allow("team-a-prod-write")},
		{"header absent", get("team-a/web", "echo", "POST", "/orders"),
			deny(`no rule allows spiffe://example.org/team-a/web to POST /orders on route "echo" and policy.default is deny`)},
		{"header value differs", get("team-a/web", "echo", "POST", "/orders", "X-Env", "dev"),
			deny(`no rule allows spiffe://example.org/team-a/web to POST /orders on route "echo" and policy.default is deny`)},
		{"header value case matters", get("team-a/web", "echo", "POST", "/orders", "X-Env", "Prod"),
			deny(`no rule allows spiffe://example.org/team-a/web to POST /orders on route "echo" and policy.default is deny`)},
		{"header with a second, other value", get("team-a/web", "echo", "POST", "/orders", "X-Env", "prod", "X-Env", "dev"),
			deny(`no rule allows spiffe://example.org/team-a/web to POST /orders on route "echo" and policy.default is deny`)},
		{"header as a comma list", get("team-a/web", "echo", "POST", "/orders", "X-Env", "prod, dev"),
			deny(`no rule allows spiffe://example.org/team-a/web to POST /orders on route "echo" and policy.default is deny`)},
		{"empty header value", get("team-a/web", "echo", "POST", "/orders", "X-Env", ""),
			deny(`no rule allows spiffe://example.org/team-a/web to POST /orders on route "echo" and policy.default is deny`)},

		// Selectors.
		{"every selector present", withSelectors(get("anyone", "echo", "PUT", "/x"), "unix:gid:5", "unix:path:/usr/bin/tool", "unix:uid:1000"), allow("uid-1000")},
		{"one selector missing", withSelectors(get("anyone", "echo", "PUT", "/x"), "unix:uid:1000"),
			deny(`no rule allows spiffe://example.org/anyone to PUT /x on route "echo" and policy.default is deny`)},
		{"from and selectors both needed", withSelectors(get("ops", "db", "GET", "/"), "unix:uid:0"), allow("ops-with-selector")},
		{"from without the selector", withSelectors(get("ops", "db", "GET", "/"), "unix:uid:1"),
			deny(`no rule allows spiffe://example.org/ops to GET / on route "db" and policy.default is deny`)},
		{"selector without the ID", withSelectors(get("dev", "db", "GET", "/"), "unix:uid:0"),
			deny(`no rule allows spiffe://example.org/dev to GET / on route "db" and policy.default is deny`)},

		// Connections.
		{"connection allowed by a rule without HTTP conditions", conn("billing", "echo"), allow("billing-echo")},
		{"connection skips rules with HTTP conditions", conn("team-a/web", "echo"),
			deny(`no rule allows spiffe://example.org/team-a/web to connect to route "echo" and policy.default is deny ` +
				`(a tunnel or raw connection has no method, path or headers: rules that set them do not apply)`)},
		{"connection skips a paths-only rule", conn("anyone", "db"),
			deny(`no rule allows spiffe://example.org/anyone to connect to route "db" and policy.default is deny ` +
				`(a tunnel or raw connection has no method, path or headers: rules that set them do not apply)`)},
		{"connection by prefix", conn("team-a/job", "db"), allow("tcp-ok")},
		{"connection ignores method and path it should not have", Request{Source: id("team-a/web"), Route: "echo", Connection: true, Method: "GET", Path: "/public/x"},
			deny(`no rule allows spiffe://example.org/team-a/web to connect to route "echo" and policy.default is deny ` +
				`(a tunnel or raw connection has no method, path or headers: rules that set them do not apply)`)},

		// No identity.
		{"no source ID", Request{Route: "echo", Method: "GET", Path: "/public/x"}, deny(`caller has no SPIFFE ID; route "echo" needs one`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Decide(tc.req); got != tc.want {
				t.Fatalf("Decide(%+v)\n got %+v\nwant %+v", tc.req, got, tc.want)
			}
		})
	}
}

// TestDefaultAllow: the default allows what no rule matches, rules still
// name the decision, and a caller without an ID is still denied.
func TestDefaultAllow(t *testing.T) {
	p := mustNew(t, true, []Rule{{Name: "billing-echo", From: ids("billing"), To: strs("echo"), Methods: strs("GET")}})
	tests := []struct {
		req  Request
		want Decision
	}{
		{get("intruder", "echo", "GET", "/"), Decision{Allow: true, Rule: "default", Reason: "no rule matched; policy.default is allow"}},
		{conn("billing", "echo"), Decision{Allow: true, Rule: "default", Reason: "no rule matched; policy.default is allow"}},
		{get("billing", "echo", "GET", "/"), Decision{Allow: true, Rule: "billing-echo", Reason: `allowed by rule "billing-echo"`}},
		{Request{Route: "echo"}, Decision{Rule: "default", Reason: `caller has no SPIFFE ID; route "echo" needs one`}},
	}
	for _, tc := range tests {
		if got := p.Decide(tc.req); got != tc.want {
			t.Errorf("Decide(%+v)\n got %+v\nwant %+v", tc.req, got, tc.want)
		}
	}
	if !p.DefaultAllow() {
		t.Error("DefaultAllow() = false")
	}
}

// TestAuditMode: the rollout of a restriction. The old broad rule is kept
// in audit mode behind the new narrow one: what the narrow rule allows is a
// plain allow; what only the broad rule allows is still allowed but marked
// Audit ("would be denied"); what neither allows is denied. Enforce rules
// decide before audit rules whatever their order.
func TestAuditMode(t *testing.T) {
	rules := []Rule{
		{Name: "legacy-any", FromPrefix: ids("team-a"), To: strs("echo", "db"), Mode: Audit}, // written first on purpose
		{Name: "read-public", FromPrefix: ids("team-a"), To: strs("echo"), Methods: strs("GET"), Paths: strs("/public/*")},
		{Name: "legacy-admin", From: ids("admin"), To: strs("echo"), Mode: Audit},
		{Name: "admin-db", From: ids("admin"), To: strs("db")},
	}
	p := mustNew(t, false, rules)
	audit := func(rule string) Decision {
		return Decision{Allow: true, Rule: rule, Audit: true, Reason: `allowed by audit-mode rule "` + rule +
			`" only: no enforce rule allows it and policy.default is deny, so it is denied once that rule is removed`}
	}
	tests := []struct {
		name    string
		req     Request
		want    Decision
		verdict string
	}{
		{"enforce rule wins over an earlier audit rule", get("team-a/web", "echo", "GET", "/public/a"),
			Decision{Allow: true, Rule: "read-public", Reason: `allowed by rule "read-public"`}, "allow"},
		{"only the audit rule matches", get("team-a/web", "echo", "POST", "/admin"), audit("legacy-any"), "audit"},
		{"audit rule on a connection", conn("team-a/web", "db"), audit("legacy-any"), "audit"},
		{"second audit rule", get("admin", "echo", "DELETE", "/x"), audit("legacy-admin"), "audit"},
		{"enforce rule for another route is not involved", conn("admin", "db"),
			Decision{Allow: true, Rule: "admin-db", Reason: `allowed by rule "admin-db"`}, "allow"},
		{"neither matches", get("team-b/x", "echo", "GET", "/public/a"),
			Decision{Rule: "default", Reason: `no rule allows spiffe://example.org/team-b/x to GET /public/a on route "echo" and policy.default is deny`}, "deny"},
		{"no identity, audit rule or not", Request{Route: "echo", Method: "GET", Path: "/"},
			Decision{Rule: "default", Reason: `caller has no SPIFFE ID; route "echo" needs one`}, "deny"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Decide(tc.req)
			if got != tc.want {
				t.Fatalf("Decide\n got %+v\nwant %+v", got, tc.want)
			}
			if v := got.Verdict(); v != tc.verdict {
				t.Fatalf("Verdict() = %q; want %q", v, tc.verdict)
			}
		})
	}

	// Removing the audit-mode rules turns exactly the "audit" decisions
	// into denials and changes nothing else.
	var enforced []Rule
	for _, r := range rules {
		if r.Mode == Enforce {
			enforced = append(enforced, r)
		}
	}
	q := mustNew(t, false, enforced)
	for _, tc := range tests {
		got, without := p.Decide(tc.req), q.Decide(tc.req)
		if got.Audit && without.Allow || !got.Audit && got != without {
			t.Errorf("%s: with audit rules %+v, without %+v", tc.name, got, without)
		}
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Enforce: "enforce", Audit: "audit", 7: "Mode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q; want %q", m, got, want)
		}
	}
}

// TestTrace: explain's view lists the route's rules in evaluation order
// (enforce first), the first condition each fails, and the decider.
func TestTrace(t *testing.T) {
	p := mustNew(t, false, []Rule{
		{Name: "legacy", FromPrefix: ids("team-a"), To: strs("echo"), Mode: Audit},
		{Name: "other-route", From: ids("team-a/web"), To: strs("db")},
		{Name: "read", FromPrefix: ids("team-a"), To: strs("echo"), Methods: strs("GET")},
		{Name: "prod", FromPrefix: ids("team-a"), To: strs("echo"), Methods: strs("POST"), Headers: map[string]string{"X-Env": "prod"}},
		{Name: "ops", From: ids("ops"), To: strs("echo")},
	})
	d, steps := p.Trace(get("team-a/web", "echo", "POST", "/x"))
	if d.Rule != "legacy" || !d.Audit {
		t.Fatalf("decision %+v", d)
	}
	want := []Step{
		{Index: 2, Rule: "read", Mode: Enforce, Failed: "methods"},
		{Index: 3, Rule: "prod", Mode: Enforce, Failed: "headers"},
		{Index: 4, Rule: "ops", Mode: Enforce, Failed: "from"},
		{Index: 0, Rule: "legacy", Mode: Audit, Decides: true},
	}
	if len(steps) != len(want) {
		t.Fatalf("steps %+v", steps)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Errorf("step %d = %+v; want %+v", i, steps[i], want[i])
		}
	}
	_, steps = p.Trace(conn("team-a/web", "echo"))
	if steps[0].Failed != "connection" {
		t.Errorf("connection trace %+v", steps)
	}
}
