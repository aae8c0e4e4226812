// Package registry maps a process's selectors to the registration entry, and
// so the SPIFFE ID, it is entitled to.
//
// An entry matches a process when all of the entry's selectors are among the
// process's selectors and the entry allows what attestation found beyond
// selectors (a tracer, injected code: Allow); when several entries match,
// the one with the most selectors wins. Entries that could tie for a
// process are rejected when the registry is built (THREATS I8), so matching
// never has to choose at random.
// The package does not attest processes (attest does) and does not read
// configuration files (config does); it is a pure, immutable lookup table.
package registry

import (
	"errors"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Entry is one registration entry: the SPIFFE ID given to processes that
// have every one of Selectors and need no more than Allow.
type Entry struct {
	ID        spiffeid.ID
	Selectors []string
	Allow     Allow
	Index     int // position in the configuration, used to name the entry in errors
}

// Allow is what a process may have beyond its selectors (THREATS I17).
// As an Entry's field it says what the entry accepts; as the argument of
// MatchProcess, what the process has. The zero value accepts, or has,
// neither.
type Allow struct {
	// Traced: the process is traced (ptrace); its tracer can run any code
	// in it.
	Traced bool
	// InjectedCode: the process runs code its executable did not choose
	// (a dynamic-loader override, a library from outside the system library
	// directories).
	InjectedCode bool
}

// covers reports whether an entry allowing a accepts a process that has p.
func (a Allow) covers(p Allow) bool {
	return (a.Traced || !p.Traced) && (a.InjectedCode || !p.InjectedCode)
}

// Registry is an immutable set of entries with no possible ties. It is safe
// for concurrent use.
type Registry struct {
	entries []entry
	// byKey maps each entry's key selector (its rarest selector) to the
	// positions of the entries keyed by it; an entry can only match a process
	// that has its key selector.
	byKey map[string][]int32
	// names: an entry, or a selector matched elsewhere (AlsoMatched), uses
	// unix:user or unix:group.
	names bool
	// shaRest: for every entry or AlsoMatched set with a unix:sha256
	// selector, its other selectors, sorted (NeedsSHA256).
	shaRest [][]string
}

type entry struct {
	Entry // Selectors sorted and deduplicated
	typed []typedSelector
}

type typedSelector struct{ typ, value string }

// EntryError is a problem with one entry on its own: no ID, no selectors, a
// malformed or repeated selector, or selectors no process can have at once.
type EntryError struct {
	Entry  Entry
	Reason string
	Err    error // the *SelectorError for a malformed selector, else nil
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("registry: entry %d (%s): %s", e.Entry.Index, e.Entry.ID, e.Reason)
}

func (e *EntryError) Unwrap() error { return e.Err }

// TieError names two entries that one process could match with the same
// number of selectors (THREATS I8). Duplicate is set when their selector
// sets are equal.
type TieError struct {
	First, Second Entry
	Duplicate     bool
}

func (e *TieError) Error() string {
	if e.Duplicate {
		return fmt.Sprintf("registry: entries %d (%s) and %d (%s) have the same selectors; remove one",
			e.First.Index, e.First.ID, e.Second.Index, e.Second.ID)
	}
	return fmt.Sprintf("registry: entries %d (%s) and %d (%s) tie: %s",
		e.First.Index, e.First.ID, e.Second.Index, e.Second.ID, e.Advice())
}

// Advice explains the tie and how to resolve it, without naming the entries.
func (e *TieError) Advice() string {
	n := len(e.First.Selectors)
	s := "s"
	if n == 1 {
		s = ""
	}
	return fmt.Sprintf("one process can match both with %d selector%s each and neither wins; "+
		"give one of them a selector that separates them (the same type with a different value in both, "+
		"e.g. unix:path or unix:sha256) or an extra selector", n, s)
}

// New checks entries and builds a Registry with opts. Every problem is
// reported: the error joins one *EntryError or *TieError per problem (use
// errors.As on each of the errors from Unwrap() []error to tell them apart).
//
// Tie rule: two entries can match the same process unless some single-valued
// selector type (every type except unix:supplementary_gid) appears in both
// with different values. Two entries that can overlap and have the same
// number of selectors are a tie, reported even when no real process could
// have both sets (unix:uid:1000 and unix:user:bob tie although bob may not be
// uid 1000). Equal selector sets are duplicates.
func New(entries []Entry, opts ...Option) (*Registry, error) {
	var errs []error
	r := &Registry{entries: make([]entry, 0, len(entries))}
	for _, o := range opts {
		o(r)
	}
	for _, in := range entries {
		e, err := newEntry(in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.entries = append(r.entries, e)
	}
	errs = append(errs, r.ties()...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r.index()
	for _, e := range r.entries {
		r.names = r.names || usesNames(e.Selectors)
		r.addSHA256Set(e.Selectors)
	}
	return r, nil
}

func newEntry(in Entry) (entry, error) {
	fail := func(err error, format string, args ...any) (entry, error) {
		return entry{}, &EntryError{Entry: in, Reason: fmt.Sprintf(format, args...), Err: err}
	}
	if in.ID.IsZero() {
		return fail(nil, "no SPIFFE ID")
	}
	if len(in.Selectors) == 0 {
		return fail(nil, "no selectors; an entry without selectors would match every process")
	}
	e := entry{Entry: in}
	e.Selectors = slices.Clone(in.Selectors)
	slices.Sort(e.Selectors)
	single := map[string]string{}
	for i, s := range e.Selectors {
		if i > 0 && s == e.Selectors[i-1] {
			return fail(nil, "selector %q is listed twice", s)
		}
		typ, value, err := ParseSelector(s)
		if err != nil {
			var se *SelectorError
			errors.As(err, &se)
			return fail(err, "selector %q: %s", s, se.Reason)
		}
		if prev, ok := single[typ]; ok && singleValued(typ) {
			return fail(nil, "can never match: a process has one %s, and the entry asks for both %q and %q",
				typ, prev, value)
		}
		single[typ] = value
		e.typed = append(e.typed, typedSelector{typ, value})
	}
	return e, nil
}

// ties reports every pair of entries with the same number of selectors that
// one process could match.
func (r *Registry) ties() []error {
	var errs []error
	bySize := map[int][]int{}
	for i, e := range r.entries {
		bySize[len(e.Selectors)] = append(bySize[len(e.Selectors)], i)
	}
	for i := range r.entries {
		a := &r.entries[i]
		for _, j := range bySize[len(a.Selectors)] {
			if j <= i {
				continue
			}
			b := &r.entries[j]
			if slices.Equal(a.Selectors, b.Selectors) {
				errs = append(errs, &TieError{First: a.Entry, Second: b.Entry, Duplicate: true})
			} else if canOverlap(a, b) {
				errs = append(errs, &TieError{First: a.Entry, Second: b.Entry})
			}
		}
	}
	return errs
}

// canOverlap reports whether no single-valued selector type separates a and b.
func canOverlap(a, b *entry) bool {
	for _, x := range a.typed {
		if !singleValued(x.typ) {
			continue
		}
		for _, y := range b.typed {
			if x.typ == y.typ && x.value != y.value {
				return false
			}
		}
	}
	return true
}
