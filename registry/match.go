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

// Match returns the entry for a process with the given selectors: the entry
// with the most selectors among those whose selectors are all present. It
// returns false when none matches, and also when two entries match equally
// well, which New makes impossible for processes with one value per
// single-valued selector type. selectors should be sorted (attestation
// reports them sorted); unsorted input is sorted on a copy. The returned
// entry's Selectors are shared and must not be modified.
func (r *Registry) Match(selectors []string) (Entry, bool) {
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
			if !subset(e.Selectors, selectors) {
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
