package policy

import "github.com/spiffe/go-spiffe/v2/spiffeid"

// MayAllow reports whether any request or connection from source to route
// could be allowed: the default allows, or some rule (enforce or audit)
// names the route and source, whatever its selector, method, path and
// header conditions. It errs towards true; a false means nothing from
// source reaches route, so a reload may close every connection it holds.
func (p *Policy) MayAllow(source spiffeid.ID, route string) bool {
	if source.IsZero() {
		return false
	}
	if p.defaultAllow {
		return true
	}
	for _, c := range p.byRoute[route] {
		if c.anySource {
			return true
		}
		if _, ok := c.exact[source]; ok || hasPrefix(source.String(), c.prefixes) {
			return true
		}
	}
	return false
}
