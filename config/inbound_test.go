package config

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
)

const inboundBase = `trust_domain: example.org
trust_bundles:
  - {trust_domain: partner.test, file: /etc/procmesh/partner.pem}
workloads:
  - {spiffe_id: spiffe://example.org/orders, selectors: ["unix:uid:1001"]}
inbound:
`

func TestInboundDecodes(t *testing.T) {
	c, err := Parse("t.yaml", []byte(inboundBase+`  - name: orders
    listen: 0.0.0.0:8443
    service: /run/orders.sock
    identity: spiffe://example.org/orders
    policy:
      rules:
        - {from: ["spiffe://example.org/frontend/*", "spiffe://partner.test/web"], methods: [GET]}
  - name: db
    listen: "[::1]:5432"
    service: /run/db.sock
    protocol: tcp
    identity: spiffe://example.org/orders
    pass_identity: proxy-v2
    policy: {default: allow}
`))
	if err != nil {
		t.Fatal(err)
	}
	o, d := c.Inbound[0], c.Inbound[1]
	if o.Protocol != "http1" || o.PassIdentity != "xfcc" || o.Policy.Default != "deny" || o.Policy.Rules[0].Name != "rule[0]" {
		t.Fatalf("defaults: %+v", o)
	}
	if d.PassIdentity != "proxy-v2" || d.Protocol != "tcp" {
		t.Fatalf("db: %+v", d)
	}
	p, err := c.InboundPolicy(0)
	if err != nil {
		t.Fatal(err)
	}
	from := spiffeid.RequireFromString("spiffe://partner.test/web")
	if !p.Decide(policy.Request{Source: from, Route: "orders", Method: "GET", Path: "/"}).Allow {
		t.Fatal("partner GET refused")
	}
	if p.Decide(policy.Request{Source: from, Route: "orders", Method: "POST", Path: "/"}).Allow {
		t.Fatal("partner POST allowed")
	}
	c2, err := Parse("t.yaml", []byte(inboundBase+"  - {name: t, listen: \":1\", service: /run/t.sock, protocol: tcp, identity: spiffe://example.org/orders}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c2.Inbound[0].PassIdentity != "none" {
		t.Fatalf("tcp default pass_identity %q", c2.Inbound[0].PassIdentity)
	}
}

func TestInboundErrors(t *testing.T) {
	item := func(extra string) string {
		return inboundBase + "  - name: orders\n    listen: 0.0.0.0:8443\n    service: /run/orders.sock\n    identity: spiffe://example.org/orders\n" + extra
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", item("    tls: true\n"), `t.yaml:11: unknown key "tls" in inbound[0] (known: name, listen, service, protocol, identity, policy, pass_identity)`},
		{"missing identity", inboundBase + "  - {name: a, listen: \":1\", service: /run/a.sock}\n", `t.yaml:7: inbound[0]: missing required key "identity"`},
		{"listen name", item("")[:0] + inboundBase + "  - {name: a, listen: \"localhost:1\", service: /run/a.sock, identity: spiffe://example.org/orders}\n", `t.yaml:7: inbound[0].listen: host "localhost" of "localhost:1" is not an IP address`},
		{"rule with to", item("    policy: {rules: [{from: [\"spiffe://example.org/a\"], to: [x]}]}\n"), `t.yaml:11: unknown key "to" in inbound[0].policy.rules[0]`},
		{"rule with selectors", item("    policy: {rules: [{from: [\"spiffe://example.org/a\"], selectors: [\"unix:uid:1\"]}]}\n"), `unknown key "selectors" in inbound[0].policy.rules[0]`},
		{"rule without from", item("    policy: {rules: [{methods: [GET]}]}\n"), `inbound[0].policy.rules[0]: missing required key "from"`},
		{"unknown trust domain", item("    policy: {rules: [{from: [\"spiffe://nowhere.test/a\"]}]}\n"), `t.yaml:11: inbound[0].policy.rules[0].from[0]: no trust bundle for trust domain nowhere.test`},
		{"xfcc on tcp", item("    protocol: tcp\n    pass_identity: xfcc\n"), `inbound[0].pass_identity: xfcc is an HTTP header and protocol is tcp`},
		{"proxy-v2 on http", item("    pass_identity: proxy-v2\n"), `inbound[0].pass_identity: proxy-v2 needs protocol tcp`},
		{"methods on tcp", item("    protocol: tcp\n    policy: {rules: [{from: [\"spiffe://example.org/a\"], methods: [GET]}]}\n"), `inbound[0].policy.rules[0]`},
		{"identity unregistered", inboundBase + "  - {name: a, listen: \":1\", service: /run/a.sock, identity: spiffe://example.org/nobody}\n", `inbound[0].identity: no workloads entry has spiffe_id spiffe://example.org/nobody`},
		{"identity foreign", inboundBase + "  - {name: a, listen: \":1\", service: /run/a.sock, identity: spiffe://partner.test/x}\n", `inbound[0].identity: spiffe://partner.test/x is not in trust_domain example.org`},
		{"duplicate listen", inboundBase + "  - {name: a, listen: \":1\", service: /run/a.sock, identity: spiffe://example.org/orders}\n  - {name: b, listen: \":1\", service: /run/b.sock, identity: spiffe://example.org/orders}\n", `t.yaml:8: inbound[1].listen: :1 is already the address of inbound[0] (line 7)`},
		{"own socket", inboundBase + "  - {name: a, listen: \":1\", service: /run/procmesh/egress.sock, identity: spiffe://example.org/orders}\n", `inbound[0].service: /run/procmesh/egress.sock is one of procmesh's own sockets`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}
