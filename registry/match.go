package registry

import (
	"slices"
	"strings"
)

// index picks each entry's rarest selector as its key.
func (r *Registry) index() {
	freq := map[string]int{}
	for _, e := range r.entries {
		for _, s := range e.Selectors {
			freq[s]++
		}
	}
	r.byKey = make(map[string][]int32, len(freq))
	for i, e := range r.entries {
		key := e.Selectors[0]
		for _, s := range e.Selectors[1:] {
			if freq[s] < freq[key] {
				key = s
			}
		}
		r.byKey[key] = append(r.byKey[key], int32(i))
	}
}

// Entries returns the entries in configuration order, selectors sorted.
func (r *Registry) Entries() []Entry {
	out := make([]Entry, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.Entry
		out[i].Selectors = slices.Clone(e.Selectors)
	}
	return out
}

// Match returns the entry for a process with the given selectors that is
// neither traced nor running injected code: MatchProcess(selectors,
// Allow{}).
func (r *Registry) Match(selectors []string) (Entry, bool) {
	return r.MatchProcess(selectors, Allow{})
}

// MatchProcess returns the entry for a process with the given selectors
// that has has (traced, injected code): the entry with the most selectors
// among those whose selectors are all present and that allow has. It
// returns false when none matches, and also when two entries match equally
// well, which New makes impossible for processes with one value per
// single-valued selector type. selectors should be sorted (attestation
// reports them sorted); unsorted input is sorted on a copy. The returned
// entry's Selectors are shared and must not be modified.
//
// An entry that does not allow has is skipped, so a process can match a
// less specific entry that allows it; Refusing names the skipped ones.
func (r *Registry) MatchProcess(selectors []string, has Allow) (Entry, bool) {
	if r == nil {
		return Entry{}, false
	}
	if !slices.IsSorted(selectors) {
		selectors = slices.Clone(selectors)
		slices.Sort(selectors)
	}
	best, tied := -1, false
	for k, s := range selectors {
		if k > 0 && s == selectors[k-1] {
			continue
		}
		for _, i := range r.byKey[s] {
			e := &r.entries[i]
			if !e.Allow.covers(has) || !subset(e.Selectors, selectors) {
				continue
			}
			switch n := len(e.Selectors); {
			case best < 0 || n > len(r.entries[best].Selectors):
				best, tied = int(i), false
			case n == len(r.entries[best].Selectors):
				tied = true
			}
		}
	}
	if best < 0 || tied {
		return Entry{}, false
	}
	return r.entries[best].Entry, true
}

// Refusing returns, in configuration order, the entries whose selectors are
// all among selectors but which do not allow has: why a process that
// MatchProcess refused, or gave a less specific entry, did not get them.
func (r *Registry) Refusing(selectors []string, has Allow) []Entry {
	if r == nil || has == (Allow{}) {
		return nil
	}
	if !slices.IsSorted(selectors) {
		selectors = slices.Clone(selectors)
		slices.Sort(selectors)
	}
	var out []Entry
	for _, e := range r.entries {
		if !e.Allow.covers(has) && subset(e.Selectors, selectors) {
			out = append(out, e.Entry)
		}
	}
	return out
}

// subset reports whether every element of sub is in set; both sorted.
func subset(sub, set []string) bool {
	if len(sub) > len(set) {
		return false
	}
	j := 0
	for _, s := range sub {
		for j < len(set) && strings.Compare(set[j], s) < 0 {
			j++
		}
		if j == len(set) || set[j] != s {
			return false
		}
		j++
	}
	return true
}
