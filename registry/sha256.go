package registry

import (
	"slices"
	"strings"
)

// NeedsSHA256 reports whether the hash of a process's executable could
// change what it matches: whether some entry, or some selector set given
// with AlsoMatched (a policy rule's), has a unix:sha256 selector and all of
// its other selectors among selectors, the process's selectors without
// unix:sha256 (THREATS F12). When it is false, no unix:sha256 selector the
// process could have would make an entry or rule match, so attestation can
// skip reading the executable. A nil Registry needs none.
func (r *Registry) NeedsSHA256(selectors []string) bool {
	if r == nil || len(r.shaRest) == 0 {
		return false
	}
	if !slices.IsSorted(selectors) {
		selectors = slices.Clone(selectors)
		slices.Sort(selectors)
	}
	for _, rest := range r.shaRest {
		if subset(rest, selectors) {
			return true
		}
	}
	return false
}

// addSHA256Set records set when it has a unix:sha256 selector: its other
// selectors, sorted, are what a process must have for the hash to matter.
func (r *Registry) addSHA256Set(set []string) {
	var rest []string
	pinned := false
	for _, s := range set {
		if strings.HasPrefix(s, TypeSHA256+":") {
			pinned = true
			continue
		}
		rest = append(rest, s)
	}
	if !pinned {
		return
	}
	slices.Sort(rest)
	rest = slices.Compact(rest)
	for _, have := range r.shaRest {
		if slices.Equal(have, rest) {
			return
		}
	}
	r.shaRest = append(r.shaRest, rest)
}
