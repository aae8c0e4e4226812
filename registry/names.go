package registry

import "strings"

// Option configures New.
type Option func(*Registry)

// AlsoMatched names one set of selectors that is matched against a
// process's selectors outside the registry, all of them together, such as
// the selectors of one policy rule, so that NeedsNames and NeedsSHA256
// account for them. Give each rule's selectors in their own AlsoMatched:
// the union of several rules would make NeedsSHA256 answer false for a
// process that one of them could match. They are not entries and match
// nothing here; malformed ones are ignored (their owner checks them).
func AlsoMatched(selectors ...string) Option {
	return func(r *Registry) {
		r.names = r.names || usesNames(selectors)
		r.addSHA256Set(selectors)
	}
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
