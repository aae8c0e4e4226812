package config

import (
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"

	"github.com/procmesh/procmesh/internal/reqfields"
)

// Decoding of routes[].jwt_svid: the JWT-SVID procmesh attaches to a
// route's HTTP requests.

// jwtSVID reads a route's jwt_svid mapping. Absent or null is off.
func (w *walker) jwtSVID(n *yaml.Node, path string) JWTSVID {
	var j JWTSVID
	f, ok := w.mapping(n, path, keys("routes[].jwt_svid")...)
	if !ok {
		return j
	}
	j.Audience = w.stringList(f.get("audience"), f.key("audience"), func(s string) string {
		if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
			return fmt.Sprintf("%q is not an audience; use a URI or name without spaces, like https://sts.example", s)
		}
		return ""
	})
	if v := f.get("header"); v != nil {
		s, ok := w.str(v, f.key("header"))
		canon := textproto.CanonicalMIMEHeaderKey(s)
		switch {
		case !ok || s == "":
		case !httpguts.ValidHeaderFieldName(s):
			w.add(v.Line, f.key("header"), "%q is not a header field name; write the name alone, like Authorization", s)
		case reqfields.Fixed(canon):
			w.add(v.Line, f.key("header"), "%s is a hop-by-hop, framing or Forwarded field; name a field the upstream reads, like Authorization", canon)
		default:
			j.Header = canon
		}
	}
	return j
}

// validateJWTSVID checks a route's jwt_svid against the rest: an HTTP
// route, a header the upstream receives.
func (c *Config) validateJWTSVID(ps *problems, r Route, key string) {
	if r.Protocol == "tcp" {
		ps.add(r.Line, key, "a token is attached to HTTP requests and this route is protocol tcp (raw bytes); use an HTTP protocol or remove jwt_svid")
	}
	if slices.Contains(c.Upstream.RequestHeadersToRemove, r.JWTSVID.Header) {
		ps.add(r.Line, key+".header", "%s is in upstream.request_headers_to_remove, so the token would be removed too; procmesh always drops a client-sent %s on this route, remove it from that list", r.JWTSVID.Header, r.JWTSVID.Header)
	}
}

// validateJWTRules refuses a policy header condition on a route's token
// field: procmesh drops a client-sent one before policy decides, so the
// condition could never hold on that route.
func (c *Config) validateJWTRules(ps *problems) {
	header := map[string]string{}
	for _, r := range c.Routes {
		if r.JWTSVID.On() {
			header[r.Name] = r.JWTSVID.Header
		}
	}
	if len(header) == 0 {
		return
	}
	for i, rule := range c.Policy.Rules {
		for _, to := range rule.To {
			h, ok := header[to]
			if _, cond := rule.Headers[h]; ok && cond {
				ps.add(rule.Line, fmt.Sprintf("policy.rules[%d].headers", i),
					"%s on route %s is procmesh's own JWT-SVID (jwt_svid): a client-sent %s is dropped before policy, so this condition never holds there; remove it, or give %s a rule without it", h, to, h, to)
			}
		}
	}
}
