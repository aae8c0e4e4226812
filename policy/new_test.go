package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var protocols = WithRouteProtocols(map[string]string{"echo": "http1", "api": "http2", "db": "tcp", "cache": "tcp"})

// TestNewErrors compares the exact message of each malformed rule.
func TestNewErrors(t *testing.T) {
	ok := Rule{From: ids("x"), To: strs("echo")}
	with := func(f func(r *Rule)) []Rule { r := ok; f(&r); return []Rule{r} }
	tests := []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"duplicate name", []Rule{{Name: "a", From: ids("x"), To: strs("echo")}, {Name: "a", From: ids("y"), To: strs("echo")}},
			`policy: rule "a": name: name already used by rule[0]`},
		{"no callers", []Rule{{To: strs("echo")}}, `policy: rule "rule[0]": no callers: set from (SPIFFE IDs or prefixes) or selectors`},
		{"no to", []Rule{{From: ids("x")}}, `policy: rule "rule[0]": no to routes`},
		{"zero ID", with(func(r *Rule) { r.From = []spiffeid.ID{{}} }), `policy: rule "rule[0]": from[0]: empty SPIFFE ID`},
		{"trust domain as exact ID", with(func(r *Rule) { r.From = []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org")} }),
			`policy: rule "rule[0]": from[0]: spiffe://example.org names a trust domain, not a workload; use it as a prefix for every ID in it`},
		{"zero prefix", with(func(r *Rule) { r.FromPrefix = []spiffeid.ID{{}} }), `policy: rule "rule[0]": from_prefix[0]: empty SPIFFE ID`},
		{"empty selector", with(func(r *Rule) { r.Selectors = strs("") }), `policy: rule "rule[0]": selectors[0]: empty selector`},
		{"duplicate selector", with(func(r *Rule) { r.Selectors = strs("unix:uid:1", "unix:uid:1") }), `policy: rule "rule[0]": selectors[1]: "unix:uid:1" is listed twice`},
		{"empty route", with(func(r *Rule) { r.To = strs("") }), `policy: rule "rule[0]": to[0]: empty route name`},
		{"duplicate route", with(func(r *Rule) { r.To = strs("echo", "echo") }), `policy: rule "rule[0]": to[1]: route "echo" is listed twice`},
		{"unknown route", []Rule{{From: ids("x"), To: strs("echo", "nope")}}, `policy: rule "rule[0]": to[1]: no route named "nope"`},
		{"lower-case method", with(func(r *Rule) { r.Methods = strs("get") }),
			`policy: rule "rule[0]": methods[0]: "get": methods are case-sensitive and standard ones upper case; write GET`},
		{"bad method", with(func(r *Rule) { r.Methods = strs("GET POST") }), `policy: rule "rule[0]": methods[0]: "GET POST" is not an HTTP method; write it like GET`},
		{"CONNECT", with(func(r *Rule) { r.Methods = strs("CONNECT") }),
			`policy: rule "rule[0]": methods[0]: CONNECT tunnels are connection-level, not requests: a rule without methods, paths and headers allows them`},
		{"duplicate method", with(func(r *Rule) { r.Methods = strs("GET", "GET") }), `policy: rule "rule[0]": methods[1]: GET is listed twice`},
		{"relative path", with(func(r *Rule) { r.Paths = strs("public/*") }), `policy: rule "rule[0]": paths[0]: "public/*": does not start with /`},
		{"star inside", with(func(r *Rule) { r.Paths = strs("/a/*/b") }), `policy: rule "rule[0]": paths[0]: "/a/*/b": * is only allowed as the whole last segment, like /public/*`},
		{"star glued", with(func(r *Rule) { r.Paths = strs("/public*") }), `policy: rule "rule[0]": paths[0]: "/public*": * is only allowed as the whole last segment, like /public/*`},
		{"unnormalised path", with(func(r *Rule) { r.Paths = strs("/a/../b") }), `policy: rule "rule[0]": paths[0]: "/a/../b" is not normalised, so no request path equals it; write "/b"`},
		{"unnormalised prefix", with(func(r *Rule) { r.Paths = strs("/%61//*") }), `policy: rule "rule[0]": paths[0]: "/%61//*" is not normalised, so no request path equals it; write "/a/*"`},
		{"encoded slash in path", with(func(r *Rule) { r.Paths = strs("/a%2Fb") }),
			`policy: rule "rule[0]": paths[0]: "/a%2Fb": encoded slash (%2F): upstreams disagree on whether it separates segments`},
		{"duplicate path", with(func(r *Rule) { r.Paths = strs("/a", "/a") }), `policy: rule "rule[0]": paths[1]: "/a" is listed twice`},
		{"header name", with(func(r *Rule) { r.Headers = map[string]string{"x env": "a"} }), `policy: rule "rule[0]": headers.x env: "x env" is not a header name`},
		{"host header", with(func(r *Rule) { r.Headers = map[string]string{"host": "a"} }),
			`policy: rule "rule[0]": headers.host: Host is not passed to policy: the host selects the route; name the route in to`},
		{"hop-by-hop header", with(func(r *Rule) { r.Headers = map[string]string{"Connection": "a"} }),
			`policy: rule "rule[0]": headers.Connection: Connection is not passed to policy: it is hop-by-hop: the proxy consumes it`},
		{"header twice", with(func(r *Rule) { r.Headers = map[string]string{"X-Env": "a", "x-env": "a"} }),
			`policy: rule "rule[0]": headers.x-env: X-Env is set twice (header names are case-insensitive)`},
		{"empty header value", with(func(r *Rule) { r.Headers = map[string]string{"X-Env": ""} }),
			`policy: rule "rule[0]": headers.X-Env: empty value; a header condition needs the exact value the header must have`},
		{"header value spaces", with(func(r *Rule) { r.Headers = map[string]string{"X-Env": " prod"} }),
			`policy: rule "rule[0]": headers.X-Env: value " prod" has control characters or surrounding spaces; no request can carry it`},
		{"unknown mode", with(func(r *Rule) { r.Mode = 9 }), `policy: rule "rule[0]": mode: unknown mode 9`},
		{"all problems", []Rule{{}, {Name: "b"}},
			"policy: rule \"rule[0]\": no callers: set from (SPIFFE IDs or prefixes) or selectors\npolicy: rule \"rule[0]\": no to routes\n" +
				"policy: rule \"b\": no callers: set from (SPIFFE IDs or prefixes) or selectors\npolicy: rule \"b\": no to routes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(false, tc.rules, protocols)
			if err == nil || err.Error() != tc.want || p != nil {
				t.Fatalf("New = %v, %v\nwant error %s", p, err, tc.want)
			}
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var re *RuleError
				if !errors.As(e, &re) {
					t.Fatalf("%T is not a *RuleError", e)
				}
			}
		})
	}
}

// TestUnreachable: rules that can never decide a request are errors with
// the rule's index and the rules deciding first; rules that can are not.
func TestUnreachable(t *testing.T) {
	type want struct {
		index  int
		reason string
		field  string
		by     []int
		live   bool // reported but not unreachable
	}
	shadow := func(i int, by []int, names string) want {
		return want{index: i, by: by, reason: "unreachable: every request it matches is decided first by rule " + names + "; remove it or narrow the earlier rule"}
	}
	tests := []struct {
		name         string
		defaultAllow bool
		rules        []Rule
		want         []want
	}{
		{"same rule twice", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo")},
			{Name: "b", From: ids("x"), To: strs("echo")},
		}, []want{shadow(1, []int{0}, `"a"`)}},
		{"broader earlier rule", false, []Rule{
			{Name: "team", FromPrefix: ids("team-a"), To: strs("echo", "db")},
			{Name: "web", From: ids("team-a/web"), To: strs("echo"), Methods: strs("GET"), Paths: strs("/x/*"), Headers: map[string]string{"A": "1"}},
		}, []want{shadow(1, []int{0}, `"team"`)}},
		{"narrower earlier rule is fine", false, []Rule{
			{Name: "web", From: ids("team-a/web"), To: strs("echo"), Methods: strs("GET")},
			{Name: "team", FromPrefix: ids("team-a"), To: strs("echo")},
		}, nil},
		{"prefix covers a deeper prefix", false, []Rule{
			{Name: "a", FromPrefix: ids("team-a"), To: strs("echo")},
			{Name: "b", FromPrefix: ids("team-a/sub"), To: strs("echo")},
		}, []want{shadow(1, []int{0}, `"a"`)}},
		{"prefix does not cover a sibling with a longer name", false, []Rule{
			{Name: "a", FromPrefix: ids("team-a"), To: strs("echo")},
			{Name: "b", FromPrefix: ids("team-abc"), To: strs("echo")},
			{Name: "c", From: ids("team-a"), To: strs("echo")},
		}, nil},
		{"covered on each route by a different rule", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo")},
			{Name: "b", From: ids("x"), To: strs("api")},
			{Name: "c", From: ids("x"), To: strs("echo", "api"), Methods: strs("GET")},
		}, []want{shadow(2, []int{0, 1}, `"a" and "b"`)}},
		{"covered on one route only is fine", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo")},
			{Name: "c", From: ids("x"), To: strs("echo", "api")},
		}, nil},
		{"fewer selectors cover more", false, []Rule{
			{Name: "a", Selectors: strs("unix:uid:1"), To: strs("echo")},
			{Name: "b", From: ids("x"), Selectors: strs("unix:uid:1", "unix:gid:2"), To: strs("echo")},
		}, []want{shadow(1, []int{0}, `"a"`)}},
		{"more selectors do not cover fewer", false, []Rule{
			{Name: "a", Selectors: strs("unix:uid:1", "unix:gid:2"), To: strs("echo")},
			{Name: "b", Selectors: strs("unix:uid:1"), To: strs("echo")},
		}, nil},
		{"selectors-only rule covers the same selectors with from", false, []Rule{
			{Name: "a", Selectors: strs("unix:uid:1"), To: strs("echo")},
			{Name: "b", Selectors: strs("unix:uid:1"), FromPrefix: ids("t"), To: strs("echo")},
		}, []want{shadow(1, []int{0}, `"a"`)}},
		{"methods subset", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo"), Methods: strs("GET", "HEAD")},
			{Name: "b", From: ids("x"), To: strs("echo"), Methods: strs("HEAD")},
			{Name: "c", From: ids("x"), To: strs("echo"), Methods: strs("HEAD", "POST")},
			{Name: "d", From: ids("x"), To: strs("echo")},
		}, []want{shadow(1, []int{0}, `"a"`)}},
		{"path prefixes", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo"), Paths: strs("/public/*")},
			{Name: "b", From: ids("x"), To: strs("echo"), Paths: strs("/public/", "/public/a/*", "/public/b")},
			{Name: "c", From: ids("x"), To: strs("echo"), Paths: strs("/public")},
			{Name: "d", From: ids("x"), To: strs("echo"), Paths: strs("/publicity/*")},
			{Name: "e", From: ids("x"), To: strs("echo"), Paths: strs("/*")},
			{Name: "f", From: ids("x"), To: strs("echo"), Paths: strs("/")},
		}, []want{shadow(1, []int{0}, `"a"`), shadow(5, []int{4}, `"e"`)}},
		{"exact path does not cover a prefix", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo"), Paths: strs("/a/")},
			{Name: "b", From: ids("x"), To: strs("echo"), Paths: strs("/a/*")},
		}, nil},
		{"headers subset", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo"), Headers: map[string]string{"x-env": "prod"}},
			{Name: "b", From: ids("x"), To: strs("echo"), Headers: map[string]string{"X-Env": "prod", "X-Team": "a"}},
			{Name: "c", From: ids("x"), To: strs("echo"), Headers: map[string]string{"X-Env": "dev"}},
			{Name: "d", From: ids("x"), To: strs("echo")},
		}, []want{shadow(1, []int{0}, `"a"`)}},
		{"HTTP-only rule does not cover connections", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo"), Methods: strs("GET")},
			{Name: "b", From: ids("x"), To: strs("echo")},
		}, nil},

		// Audit mode.
		{"audit rule identical to a later enforce rule", false, []Rule{
			{Name: "try", From: ids("x"), To: strs("echo"), Mode: Audit},
			{Name: "real", From: ids("x"), To: strs("echo")},
		}, []want{{index: 0, by: []int{1}, reason: `unreachable: every request it matches is decided first by rule "real" (enforce rules are tried before audit-mode rules); remove it or narrow the earlier rule`}}},
		{"audit rule behind a broader enforce rule", false, []Rule{
			{Name: "real", FromPrefix: ids("t"), To: strs("echo")},
			{Name: "try", From: ids("t/x"), To: strs("echo"), Methods: strs("GET"), Mode: Audit},
		}, []want{{index: 1, by: []int{0}, reason: `unreachable: every request it matches is decided first by rule "real" (enforce rules are tried before audit-mode rules); remove it or narrow the earlier rule`}}},
		{"enforce rule behind a broader audit rule is fine", false, []Rule{
			{Name: "legacy", FromPrefix: ids("t"), To: strs("echo"), Mode: Audit},
			{Name: "narrow", From: ids("t/x"), To: strs("echo"), Methods: strs("GET")},
		}, nil},
		{"audit rule behind a broader audit rule", false, []Rule{
			{Name: "a", FromPrefix: ids("t"), To: strs("echo"), Mode: Audit},
			{Name: "b", From: ids("t/x"), To: strs("echo"), Mode: Audit},
		}, []want{shadow(1, []int{0}, `"a"`)}},
		{"audit rule under default allow", true, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo"), Mode: Audit},
			{Name: "b", From: ids("x"), To: strs("echo")},
		}, []want{{index: 0, field: "mode", reason: "mode audit has no effect under policy.default allow: nothing it matches would be denied; make it enforce or remove it"}}},

		// Connection-only routes.
		{"HTTP conditions on a tcp route", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("db"), Paths: strs("/x")},
		}, []want{{index: 0, reason: "never matches: route db is protocol tcp, which carries connections with no method, path or headers, so a rule that sets them never matches there"}}},
		{"HTTP conditions on two tcp routes", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("db", "cache"), Headers: map[string]string{"A": "b"}},
		}, []want{{index: 0, reason: "never matches: routes db, cache are protocol tcp, which carries connections with no method, path or headers, so a rule that sets them never matches there"}}},
		{"HTTP conditions on a tcp and an HTTP route", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo", "db"), Methods: strs("GET")},
		}, []want{{index: 0, field: "to", live: true, reason: "route db is protocol tcp, which carries connections with no method, path or headers, so a rule that sets them never matches there; " +
			"remove db from to, or give it a rule of its own without methods, paths and headers"}}},
		{"tcp route without HTTP conditions is fine", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("db", "echo")},
		}, nil},
		{"covered on echo, dead on db", false, []Rule{
			{Name: "a", From: ids("x"), To: strs("echo")},
			{Name: "b", From: ids("x"), To: strs("echo", "db"), Methods: strs("GET")},
		}, []want{{index: 1, by: []int{0}, reason: `unreachable: every request it matches is decided first by rule "a"; and route db is protocol tcp, which carries connections with no method, path or headers, so a rule that sets them never matches there; remove it or narrow the earlier rule`}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.defaultAllow, tc.rules, protocols)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if p != nil || err == nil {
				t.Fatalf("New = %v, %v; want errors", p, err)
			}
			errs := err.(interface{ Unwrap() []error }).Unwrap()
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tc.want), err)
			}
			for i, w := range tc.want {
				var re *RuleError
				if !errors.As(errs[i], &re) {
					t.Fatalf("%T is not a *RuleError", errs[i])
				}
				if re.Index != w.index || re.Reason != w.reason || re.Field != w.field || !reflect.DeepEqual(re.By, w.by) ||
					re.Name != tc.rules[w.index].Name || re.Unreachable == w.live {
					t.Errorf("error %d\n got %+v\nwant %+v", i, *re, w)
				}
			}
		})
	}
}

// TestUnreachableWithoutProtocols: without route protocols New cannot know
// which routes are tcp and says nothing about them.
func TestUnreachableWithoutProtocols(t *testing.T) {
	if _, err := New(false, []Rule{{From: ids("x"), To: strs("db"), Paths: strs("/x")}}); err != nil {
		t.Fatal(err)
	}
}

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in     string
		id     string
		prefix bool
		err    string
	}{
		{"spiffe://example.org/a", "spiffe://example.org/a", false, ""},
		{"spiffe://example.org/team-a/*", "spiffe://example.org/team-a", true, ""},
		{"spiffe://example.org/*", "spiffe://example.org", true, ""},
		{"spiffe://example.org", "", false, "names a trust domain, not a workload; write spiffe://example.org/* for every ID in it"},
		{"spiffe://example.org/team-*", "", false, "* is only allowed as the whole last segment"},
		{"spiffe://example.org/*/x", "", false, "* is only allowed as the whole last segment"},
		{"spiffe://example.org/a/**", "", false, "* is only allowed as the whole last segment"},
		{"spiffe://example.org/a/../*", "", false, "is not a canonical SPIFFE ID: path cannot contain dot segments"},
		{"spiffe://Example.org/a/*", "", false, "is not a canonical SPIFFE ID"},
		{"spiffe://example.org/a/", "", false, "is not a canonical SPIFFE ID"},
		{"/*", "", false, "is not a canonical SPIFFE ID"},
	}
	for _, tc := range tests {
		got, prefix, err := ParsePattern(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParsePattern(%q) error %v; want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || got.String() != tc.id || prefix != tc.prefix):
			t.Errorf("ParsePattern(%q) = %v, %v, %v; want %s, %v", tc.in, got, prefix, err, tc.id, tc.prefix)
		}
	}
}
