package registry

import "strings"

// Option configures New.
type Option func(*Registry)

// AlsoMatched names selectors that are matched against a process's
// selectors outside the registry, such as the selectors of policy rules,
// so that NeedsNames accounts for them. They are not entries and match
// nothing here; malformed ones are ignored (their owner checks them).
func AlsoMatched(selectors ...string) Option {
	return func(r *Registry) { r.names = r.names || usesNames(selectors) }
}

// NeedsNames reports whether a process's user and group names matter: an
// entry, or a selector given with AlsoMatched, is a unix:user or
// unix:group selector. Attestation can skip the name lookups otherwise.
// A nil Registry needs none.
func (r *Registry) NeedsNames() bool { return r != nil && r.names }

// usesNames reports whether any selector is of a name type.
func usesNames(selectors []string) bool {
	for _, s := range selectors {
		if strings.HasPrefix(s, TypeUser+":") || strings.HasPrefix(s, TypeGroup+":") {
			return true
		}
	}
	return false
}
