package config

import (
	"slices"
	"testing"
	"time"
)

func TestJWTSVIDRoute(t *testing.T) {
	src := `trust_domain: example.org
identity: {jwt_svid_ttl: 2m, jwt_key_rotation: 6h}
routes:
  - name: sts
    host: sts.test
    upstream: "127.0.0.1:8443"
    server_id: spiffe://example.org/sts
    jwt_svid: {audience: [https://sts.example, other]}
  - name: api
    host: api.test
    upstream: "127.0.0.1:8444"
    server_id: spiffe://example.org/api
    jwt_svid: {audience: [api], header: x-spiffe-jwt}
`
	c, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Identity.JWTSVIDTTL != 2*time.Minute || c.Identity.JWTKeyRotation != 6*time.Hour {
		t.Fatalf("identity %+v", c.Identity)
	}
	if j := c.Routes[0].JWTSVID; !slices.Equal(j.Audience, []string{"https://sts.example", "other"}) || j.Header != "Authorization" {
		t.Fatalf("routes[0].jwt_svid = %+v", j)
	}
	if j := c.Routes[1].JWTSVID; j.Header != "X-Spiffe-Jwt" {
		t.Fatalf("routes[1].jwt_svid = %+v", j)
	}
}

func TestJWTSVIDRouteErrors(t *testing.T) {
	const head = "trust_domain: example.org\nroutes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: spiffe://example.org/e, "
	tests := []struct{ name, src, want string }{
		{"tcp route", head + "protocol: tcp, jwt_svid: {audience: [a]}}\n",
			"test.yaml:3: routes[0].jwt_svid: a token is attached to HTTP requests and this route is protocol tcp (raw bytes); use an HTTP protocol or remove jwt_svid"},
		{"hop-by-hop header", head + "jwt_svid: {audience: [a], header: Connection}}\n",
			"test.yaml:3: routes[0].jwt_svid.header: Connection is a hop-by-hop, framing or Forwarded field; name a field the upstream reads, like Authorization"},
		{"audience with a space", head + "jwt_svid: {audience: [\"a b\"]}}\n",
			`test.yaml:3: routes[0].jwt_svid.audience[0]: "a b" is not an audience; use a URI or name without spaces, like https://sts.example`},
		{"unknown key", head + "jwt_svid: {audiences: [a]}}\n",
			`test.yaml:3: unknown key "audiences" in routes[0].jwt_svid (known: audience, header)`},
		{"header removed upstream", head + "jwt_svid: {audience: [a]}}\nupstream: {request_headers_to_remove: [authorization]}\n",
			"test.yaml:3: routes[0].jwt_svid.header: Authorization is in upstream.request_headers_to_remove, so the token would be removed too; procmesh always drops a client-sent Authorization on this route, remove it from that list"},
		{"policy condition on the token field", head + "jwt_svid: {audience: [a]}}\npolicy:\n  rules:\n    - {from: [spiffe://example.org/c], to: [e], headers: {authorization: x}}\n",
			"test.yaml:6: policy.rules[0].headers: Authorization on route e is procmesh's own JWT-SVID (jwt_svid): a client-sent Authorization is dropped before policy, so this condition never holds there; remove it, or give e a rule without it"},
		{"ttl too long", "trust_domain: example.org\nidentity: {jwt_svid_ttl: 2h}\n",
			"test.yaml:2: identity.jwt_svid_ttl: 2h is above the maximum of 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseErr(t, tt.src); got != tt.want {
				t.Errorf("error\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}
