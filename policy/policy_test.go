package policy

import (
	"fmt"
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

func TestDecide(t *testing.T) {
	rules := []Rule{
		{Name: "billing-to-echo", From: ids("billing"), To: []string{"echo"}},
		{From: ids("billing", "reports"), To: []string{"db", "echo"}}, // unnamed: rule[1]
		{Name: "reports-echo", From: ids("reports"), To: []string{"echo"}},
	}
	deny, err := New(false, rules)
	if err != nil {
		t.Fatal(err)
	}
	allow, err := New(true, rules)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    *Policy
		req  Request
		want Decision
	}{
		{"first matching rule decides", deny, Request{id("billing"), "echo"},
			Decision{true, "billing-to-echo", `allowed by rule "billing-to-echo"`}},
		{"unnamed rule is rule[N]", deny, Request{id("billing"), "db"},
			Decision{true, "rule[1]", `allowed by rule "rule[1]"`}},
		{"earlier rule shadows later", deny, Request{id("reports"), "echo"},
			Decision{true, "rule[1]", `allowed by rule "rule[1]"`}},
		{"default deny names source and route", deny, Request{id("intruder"), "echo"},
			Decision{false, "default", `no rule allows spiffe://example.org/intruder to use route "echo" and policy.default is deny`}},
		{"unknown route denied", deny, Request{id("billing"), "nope"},
			Decision{false, "default", `no rule allows spiffe://example.org/billing to use route "nope" and policy.default is deny`}},
		{"ID in another trust domain is another ID", deny, Request{spiffeid.RequireFromString("spiffe://other.org/billing"), "echo"},
			Decision{false, "default", `no rule allows spiffe://other.org/billing to use route "echo" and policy.default is deny`}},
		{"default allow", allow, Request{id("intruder"), "echo"},
			Decision{true, "default", "no rule matched; policy.default is allow"}},
		{"rules still name the decision under default allow", allow, Request{id("billing"), "echo"},
			Decision{true, "billing-to-echo", `allowed by rule "billing-to-echo"`}},
		{"no source ID denied under default allow", allow, Request{Route: "echo"},
			Decision{false, "default", `caller has no SPIFFE ID; route "echo" needs one`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Decide(tc.req); got != tc.want {
				t.Fatalf("Decide(%v, %q)\n got %+v\nwant %+v", tc.req.Source, tc.req.Route, got, tc.want)
			}
		})
	}
}

func TestNoRules(t *testing.T) {
	p, err := New(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Decide(Request{id("a"), "echo"}); d.Allow {
		t.Fatalf("empty deny policy allowed: %+v", d)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"duplicate name", []Rule{{Name: "a", From: ids("x"), To: []string{"r"}}, {Name: "a", From: ids("y"), To: []string{"r"}}},
			`policy: rule "a": name already used by rule[0]`},
		{"no from", []Rule{{To: []string{"r"}}}, `policy: rule "rule[0]": no from IDs`},
		{"no to", []Rule{{From: ids("x")}}, `policy: rule "rule[0]": no to routes`},
		{"zero ID", []Rule{{From: []spiffeid.ID{{}}, To: []string{"r"}}}, `policy: rule "rule[0]": empty SPIFFE ID in from`},
		{"empty route", []Rule{{From: ids("x"), To: []string{""}}}, `policy: rule "rule[0]": empty route name in to`},
		{"all problems", []Rule{{}, {Name: "b"}},
			"policy: rule \"rule[0]\": no from IDs\npolicy: rule \"rule[0]\": no to routes\npolicy: rule \"b\": no from IDs\npolicy: rule \"b\": no to routes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(false, tc.rules)
			if err == nil || err.Error() != tc.want || p != nil {
				t.Fatalf("New = %v, %v\nwant error %s", p, err, tc.want)
			}
		})
	}
}

// BenchmarkDecide: 200 rules over 100 routes; allowed and denied requests.
func BenchmarkDecide(b *testing.B) {
	var rules []Rule
	for i := range 200 {
		rules = append(rules, Rule{
			From: ids(fmt.Sprintf("app%d", i), fmt.Sprintf("app%d", i+1)),
			To:   []string{fmt.Sprintf("route%d", i%100)},
		})
	}
	p, err := New(false, rules)
	if err != nil {
		b.Fatal(err)
	}
	allowed := Request{id("app150"), "route50"}
	denied := Request{id("app150"), "route51"}
	if !p.Decide(allowed).Allow || p.Decide(denied).Allow {
		b.Fatal("benchmark requests decided wrongly")
	}
	b.Run("allow", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Decide(allowed)
		}
	})
	b.Run("deny", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p.Decide(denied)
		}
	})
}
