package policy

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// newUnchecked builds a Policy from rules that compile, skipping the
// reachability checks; tests use it to compare policies with and without
// the rules New would refuse.
func newUnchecked(defaultAllow bool, rules []Rule, opts ...Option) (*Policy, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &Policy{defaultAllow: defaultAllow, byRoute: map[string][]*compiled{}, protocols: o.protocols,
		allowDef: Decision{Allow: true, Rule: DefaultRule, Reason: "no rule matched; policy.default is allow"}}
	for i, r := range rules {
		c, errs := compile(i, r)
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		p.rules = append(p.rules, c)
	}
	p.index()
	return p, nil
}

// fuzzRoutes: echo and api speak HTTP, db is tcp (connections only).
var fuzzRoutes = map[string]string{"echo": "http1", "api": "http2", "db": "tcp"}

// fuzzPool is the rules FuzzDecide picks policies from: overlapping
// sources, prefixes, selectors, methods, paths, headers and modes, so that
// random subsets produce shadowing, tcp-dead rules and audit decisions.
var fuzzPool = []Rule{
	{Name: "p0", From: ids("a"), To: strs("echo")},
	{Name: "p1", FromPrefix: ids("team"), To: strs("echo", "api"), Methods: strs("GET")},
	{Name: "p2", FromPrefix: ids("team"), To: strs("echo"), Paths: strs("/public/*"), Mode: Audit},
	{Name: "p3", From: ids("team/x", "a"), To: strs("echo", "db"), Headers: map[string]string{"X-Env": "prod"}},
	{Name: "p4", Selectors: strs("unix:uid:1"), To: strs("db", "api")},
	{Name: "p5", FromPrefix: []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org")}, To: strs("echo", "db", "api"), Mode: Audit},
	{Name: "p6", From: ids("a"), Selectors: strs("unix:uid:1", "unix:gid:2"), To: strs("api"), Methods: strs("POST", "GET"), Paths: strs("/", "/v1/*")},
	{Name: "p7", FromPrefix: ids("team/x"), To: strs("echo"), Paths: strs("/public/a/*", "/x")},
	{Name: "p8", From: ids("b"), To: strs("db"), Mode: Audit},
	{Name: "p9", FromPrefix: ids("team"), To: strs("echo"), Methods: strs("GET", "HEAD"), Paths: strs("/public/*")},
	{Name: "p10", From: ids("team/x"), To: strs("echo", "api"), Headers: map[string]string{"X-Env": "prod", "X-B": "1"}, Mode: Audit},
	{Name: "p11", From: ids("b"), To: strs("db")},
}

var (
	fuzzSources   = []string{"a", "b", "team", "team/x", "team/x/y", "teamx", "c"}
	fuzzSelectors = []string{"unix:uid:1", "unix:gid:2", "unix:uid:2"}
	fuzzRouteList = []string{"echo", "api", "db", "none"}
	fuzzMethods   = []string{"GET", "POST", "HEAD", "get", ""}
)

// pick returns the pool rules whose bit is set in mask, rotated by rot so
// that order varies too.
func pick(mask uint16, rot uint8) []Rule {
	var out []Rule
	for i := range fuzzPool {
		j := (i + int(rot)) % len(fuzzPool)
		if mask&(1<<j) != 0 {
			out = append(out, fuzzPool[j])
		}
	}
	return out
}

// refMatch is the documented meaning of a rule, written independently of
// compile and match.
func refMatch(r Rule, req Request) bool {
	src := len(r.From) == 0 && len(r.FromPrefix) == 0 || slices.Contains(r.From, req.Source)
	for _, p := range r.FromPrefix {
		src = src || strings.HasPrefix(req.Source.String(), p.String()+"/")
	}
	if !src || !slices.Contains(r.To, req.Route) {
		return false
	}
	for _, s := range r.Selectors {
		if !slices.Contains(req.Selectors, s) {
			return false
		}
	}
	if req.Connection {
		return len(r.Methods) == 0 && len(r.Paths) == 0 && len(r.Headers) == 0
	}
	if len(r.Methods) > 0 && !slices.Contains(r.Methods, req.Method) {
		return false
	}
	if len(r.Paths) > 0 && !slices.ContainsFunc(r.Paths, func(p string) bool {
		if pre, ok := strings.CutSuffix(p, "*"); ok {
			return strings.HasPrefix(req.Path, pre)
		}
		return p == req.Path
	}) {
		return false
	}
	for k, v := range r.Headers {
		vs := req.Header.Values(k)
		if len(vs) == 0 || slices.ContainsFunc(vs, func(x string) bool { return x != v }) {
			return false
		}
	}
	return true
}

// refDecide: enforce rules first, then audit rules under default deny.
func refDecide(defaultAllow bool, rules []Rule, req Request) (allow bool, rule string, audit bool) {
	if req.Source.IsZero() {
		return false, DefaultRule, false
	}
	for _, r := range rules {
		if r.Mode == Enforce && refMatch(r, req) {
			return true, r.Name, false
		}
	}
	if defaultAllow {
		return true, DefaultRule, false
	}
	for _, r := range rules {
		if r.Mode == Audit && refMatch(r, req) {
			return true, r.Name, true
		}
	}
	return false, DefaultRule, false
}

// FuzzDecide builds a policy from a random subset of fuzzPool and a random
// request and checks that Decide never panics and agrees with refDecide;
// that audit-mode rules never deny anything the policy without them allows,
// and mark Audit exactly the requests it denies; and that every rule New
// reports as unreachable is really dead: removing them all changes no
// decision.
func FuzzDecide(f *testing.F) {
	f.Add(uint16(0xffff), uint8(0), false, uint8(3), uint8(1), uint8(0), uint8(0), "/public/a", "prod", "", false)
	f.Add(uint16(0x0205), uint8(3), false, uint8(4), uint8(3), uint8(1), uint8(1), "/public/../x", "prod", "prod", false)
	f.Add(uint16(0x0824), uint8(5), true, uint8(1), uint8(0), uint8(2), uint8(0), "/", "", "", true)
	f.Add(uint16(0x0410), uint8(7), false, uint8(0), uint8(7), uint8(1), uint8(2), "/v1/x", "dev", "prod", false)
	f.Fuzz(func(t *testing.T, mask uint16, rot uint8, defaultAllow bool, src, sel, route, method uint8,
		path, h1, h2 string, connection bool) {
		rules := pick(mask, rot)
		req := Request{
			Source:     id(fuzzSources[int(src)%len(fuzzSources)]),
			Route:      fuzzRouteList[int(route)%len(fuzzRouteList)],
			Method:     fuzzMethods[int(method)%len(fuzzMethods)],
			Connection: connection,
		}
		if src == 255 {
			req.Source = spiffeid.ID{}
		}
		for i, s := range fuzzSelectors {
			if sel&(1<<i) != 0 {
				req.Selectors = append(req.Selectors, s)
			}
		}
		if fuzzRoutes[req.Route] == "tcp" {
			req.Connection = true // the proxy never sends requests to tcp routes
		}
		if norm, err := NormalizePath(path); err == nil {
			req.Path = norm
		}
		req.Header = http.Header{}
		for _, v := range []string{h1, h2} {
			if v != "" {
				req.Header.Add("X-Env", v)
			}
		}
		req.Header.Set("X-B", "1")

		full, err := newUnchecked(defaultAllow, rules, WithRouteProtocols(fuzzRoutes))
		if err != nil {
			t.Fatal(err)
		}
		got := full.Decide(req)
		allow, rule, audit := refDecide(defaultAllow, rules, req)
		if got.Allow != allow || got.Rule != rule || got.Audit != audit {
			t.Fatalf("Decide = %+v; reference: allow %v rule %s audit %v\nrequest %+v\nrules %v", got, allow, rule, audit, req, names(rules))
		}
		if got.Reason == "" {
			t.Fatal("empty reason")
		}

		var enforced []Rule
		for _, r := range rules {
			if r.Mode == Enforce {
				enforced = append(enforced, r)
			}
		}
		noAudit, _ := newUnchecked(defaultAllow, enforced)
		without := noAudit.Decide(req)
		switch {
		case without.Allow && !got.Allow:
			t.Fatalf("audit rules denied: with %+v, without %+v", got, without)
		case got.Audit != (got.Allow && !without.Allow):
			t.Fatalf("Audit flag %v; with %+v, without %+v", got.Audit, got, without)
		case !got.Audit && got != without:
			t.Fatalf("audit rules changed a non-audit decision: with %+v, without %+v", got, without)
		}

		_, err = New(defaultAllow, rules, WithRouteProtocols(fuzzRoutes))
		if err == nil {
			return
		}
		dead := map[int]bool{}
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var re *RuleError
			if !errors.As(e, &re) {
				t.Fatalf("New: %T %v", e, e)
			}
			if re.Unreachable {
				dead[re.Index] = true
			} else if re.Field != "to" {
				t.Fatalf("New: %v", re)
			}
		}
		var live []Rule
		for i, r := range rules {
			if !dead[i] {
				live = append(live, r)
			}
		}
		pruned, _ := newUnchecked(defaultAllow, live)
		if after := pruned.Decide(req); after != got {
			t.Fatalf("removing the rules New reported (%v) changed the decision\nbefore %+v\nafter  %+v\nrequest %+v\nrules %v\n%v",
				dead, got, after, req, names(rules), err)
		}
	})
}

func names(rules []Rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Name + "/" + r.Mode.String()
	}
	return out
}

// TestFuzzPoolCompiles: every pool rule is valid on its own, so that New's
// errors in FuzzDecide are reachability findings only.
func TestFuzzPoolCompiles(t *testing.T) {
	for _, r := range fuzzPool {
		if _, err := New(false, []Rule{r}, WithRouteProtocols(fuzzRoutes)); err != nil && !strings.Contains(err.Error(), "protocol tcp") {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
}

// benchPolicy: 200 rules over 100 routes, a quarter each exact, prefix,
// path+method and header rules, plus audit rules.
func benchPolicy(tb testing.TB) *Policy {
	var rules []Rule
	for i := range 200 {
		r := Rule{Name: fmt.Sprintf("r%d", i), To: strs(fmt.Sprintf("route%d", i%100))}
		switch i % 4 {
		case 0:
			r.From = ids(fmt.Sprintf("app%d", i), fmt.Sprintf("app%d", i+1))
		case 1:
			r.FromPrefix = ids(fmt.Sprintf("team%d", i))
			r.Selectors = strs("unix:uid:1000")
		case 2:
			r.FromPrefix = ids(fmt.Sprintf("team%d", i))
			r.Methods = strs("GET", "HEAD")
			r.Paths = strs("/api/v1/*", "/health")
		case 3:
			r.From = ids(fmt.Sprintf("app%d", i))
			r.Headers = map[string]string{"X-Env": "prod"}
			r.Mode = Mode(i / 4 % 2)
		}
		rules = append(rules, r)
	}
	return mustNew(tb, false, rules)
}

var benchRequests = map[string]Request{
	"allow-exact":  get("app100", "route0", "GET", "/"),
	"allow-prefix": withSelectors(get("team101/x", "route1", "POST", "/"), "unix:gid:1", "unix:uid:1000"),
	"allow-path":   get("team102/web", "route2", "GET", "/api/v1/orders/42"),
	"allow-header": get("app3", "route3", "PUT", "/x", "X-Env", "prod"),
	"audit":        get("app7", "route7", "PUT", "/x", "X-Env", "prod"),
	"deny":         get("app100", "route1", "GET", "/"),
}

// TestDecideAllocs: allowing (audit included) costs no allocation.
func TestDecideAllocs(t *testing.T) {
	p := benchPolicy(t)
	for name, req := range benchRequests {
		d := p.Decide(req)
		if d.Allow != (name != "deny") || d.Audit != (name == "audit") {
			t.Fatalf("%s decided %+v", name, d)
		}
		if name == "deny" {
			continue
		}
		if n := testing.AllocsPerRun(100, func() { p.Decide(req) }); n != 0 {
			t.Errorf("%s: %v allocs per Decide", name, n)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	p := benchPolicy(b)
	for _, name := range []string{"allow-exact", "allow-prefix", "allow-path", "allow-header", "audit", "deny"} {
		req := benchRequests[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(req)
			}
		})
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, s := range []string{"/api/v1/orders/42", "/api/v1/../v1/%6Frders//42"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NormalizePath(s)
			}
		})
	}
}
