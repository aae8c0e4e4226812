package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func id(path string) spiffeid.ID { return spiffeid.RequireFromString("spiffe://example.org/" + path) }

// entries builds entries named e0, e1, ... from selector lists.
func entries(sels ...[]string) []Entry {
	out := make([]Entry, len(sels))
	for i, s := range sels {
		out[i] = Entry{ID: id(fmt.Sprintf("e%d", i)), Selectors: s, Index: i}
	}
	return out
}

func sel(s ...string) []string { return s }

func TestMatch(t *testing.T) {
	r, err := New(entries(
		sel("unix:uid:1000"),
		sel("unix:uid:1000", "unix:path:/usr/bin/billing"),
		sel("unix:uid:1000", "unix:path:/usr/bin/billing", "unix:sha256:"+strings.Repeat("ab", 32)),
		sel("unix:supplementary_gid:27", "unix:supplementary_gid:44", "unix:uid:5"),
		sel("unix:uid:0", "unix:path:/usr/bin/billing"),
	))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		selectors []string
		want      int // entry index, -1 for no match
	}{
		{"only uid", sel("unix:gid:1000", "unix:path:/usr/bin/other", "unix:uid:1000"), 0},
		{"most selectors wins over uid only", sel("unix:gid:1000", "unix:path:/usr/bin/billing", "unix:uid:1000"), 1},
		{"three beat two", sel("unix:path:/usr/bin/billing", "unix:sha256:"+strings.Repeat("ab", 32), "unix:uid:1000"), 2},
		{"other binary hash falls back to two", sel("unix:path:/usr/bin/billing", "unix:sha256:"+strings.Repeat("cd", 32), "unix:uid:1000"), 1},
		{"root billing", sel("unix:path:/usr/bin/billing", "unix:uid:0"), 4},
		{"no match", sel("unix:gid:1000", "unix:uid:1001"), -1},
		{"empty process", nil, -1},
		{"supplementary gids: all of the entry's among the process's", sel("unix:supplementary_gid:10", "unix:supplementary_gid:27", "unix:supplementary_gid:44", "unix:uid:5"), 3},
		{"supplementary gids: one missing", sel("unix:supplementary_gid:27", "unix:uid:5"), -1},
		{"unsorted input", sel("unix:uid:1000", "unix:path:/usr/bin/billing"), 1},
		{"duplicated input", sel("unix:path:/usr/bin/billing", "unix:path:/usr/bin/billing", "unix:uid:1000"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := r.Match(tc.selectors)
			switch {
			case tc.want < 0 && ok:
				t.Fatalf("Match = %s (entry %d); want no match", got.ID, got.Index)
			case tc.want >= 0 && !ok:
				t.Fatalf("Match: no match; want entry %d", tc.want)
			case tc.want >= 0 && (got.Index != tc.want || got.ID != id(fmt.Sprintf("e%d", tc.want))):
				t.Fatalf("Match = %s (entry %d); want entry %d", got.ID, got.Index, tc.want)
			}
		})
	}
}

func TestMatchNilAndEmptyRegistry(t *testing.T) {
	var nilReg *Registry
	if _, ok := nilReg.Match(sel("unix:uid:0")); ok {
		t.Fatal("nil registry matched")
	}
	r, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Match(sel("unix:uid:0")); ok {
		t.Fatal("empty registry matched")
	}
}

// TestThreat_I8_EntryTie: entries that one process could match equally well
// are refused at load, naming both; separated entries are accepted.
func TestThreat_I8_EntryTie(t *testing.T) {
	hexA, hexB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	tests := []struct {
		name    string
		a, b    []string
		tie     bool
		dup     bool
		wantErr string
	}{
		{name: "same uid, different paths", a: sel("unix:uid:1000", "unix:path:/a"), b: sel("unix:uid:1000", "unix:path:/b")},
		{name: "different sizes", a: sel("unix:uid:1000"), b: sel("unix:uid:1000", "unix:path:/b")},
		{name: "different sha256", a: sel("unix:sha256:" + hexA), b: sel("unix:sha256:" + hexB)},
		{name: "different systemd units", a: sel("systemd:id:a.service"), b: sel("systemd:id:b.service")},
		{name: "uid vs user (conservative)", a: sel("unix:uid:1000"), b: sel("unix:user:bob"), tie: true,
			wantErr: "registry: entries 0 (spiffe://example.org/e0) and 1 (spiffe://example.org/e1) tie: one process can match both with 1 selector each and neither wins; give one of them a selector that separates them (the same type with a different value in both, e.g. unix:path or unix:sha256) or an extra selector"},
		{name: "disjoint types", a: sel("unix:uid:1000", "unix:gid:5"), b: sel("unix:uid:1000", "unix:path:/x"), tie: true},
		{name: "supplementary gids never separate", a: sel("unix:supplementary_gid:1"), b: sel("unix:supplementary_gid:2"), tie: true},
		{name: "supplementary gid plus separating path", a: sel("unix:supplementary_gid:1", "unix:path:/a"), b: sel("unix:supplementary_gid:2", "unix:path:/b")},
		{name: "duplicate", a: sel("unix:uid:1000", "unix:path:/a"), b: sel("unix:path:/a", "unix:uid:1000"), tie: true, dup: true,
			wantErr: "registry: entries 0 (spiffe://example.org/e0) and 1 (spiffe://example.org/e1) have the same selectors; remove one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(entries(tc.a, tc.b))
			if !tc.tie {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if r != nil {
				t.Fatal("New returned a registry along with a tie")
			}
			var tie *TieError
			if !errors.As(err, &tie) {
				t.Fatalf("New error = %v; want *TieError", err)
			}
			if tie.First.Index != 0 || tie.Second.Index != 1 || tie.Duplicate != tc.dup {
				t.Fatalf("TieError = %+v", tie)
			}
			if tc.wantErr != "" && err.Error() != tc.wantErr {
				t.Fatalf("error\n got %s\nwant %s", err, tc.wantErr)
			}
		})
	}
}

// TestThreat_I8_MatchRefusesRuntimeTie: a process reporting two values of a
// single-valued type (which attestation never does) could match two entries
// that New correctly accepted; Match refuses rather than choosing.
func TestThreat_I8_MatchRefusesRuntimeTie(t *testing.T) {
	r, err := New(entries(sel("unix:uid:1000"), sel("unix:uid:1001")))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := r.Match(sel("unix:uid:1000", "unix:uid:1001")); ok {
		t.Fatalf("Match chose %s for a tie", got.ID)
	}
	if got, ok := r.Match(sel("unix:uid:1001")); !ok || got.Index != 1 {
		t.Fatalf("Match = %v, %v; want entry 1", got, ok)
	}
}

func TestNewEntryErrors(t *testing.T) {
	tests := []struct {
		name  string
		entry Entry
		want  string
	}{
		{"no ID", Entry{Selectors: sel("unix:uid:1")}, "registry: entry 0 (): no SPIFFE ID"},
		{"no selectors", Entry{ID: id("a")}, "registry: entry 0 (spiffe://example.org/a): no selectors; an entry without selectors would match every process"},
		{"repeated selector", Entry{ID: id("a"), Selectors: sel("unix:uid:1", "unix:uid:1")}, `registry: entry 0 (spiffe://example.org/a): selector "unix:uid:1" is listed twice`},
		{"malformed selector", Entry{ID: id("a"), Selectors: sel("unix:uid:x")}, `registry: entry 0 (spiffe://example.org/a): selector "unix:uid:x": uid must be a decimal number without leading zeros, like unix:uid:1000; use unix:user:x for a user name`},
		{"contradiction", Entry{ID: id("a"), Selectors: sel("unix:uid:2", "unix:uid:1")}, `registry: entry 0 (spiffe://example.org/a): can never match: a process has one unix:uid, and the entry asks for both "1" and "2"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New([]Entry{tc.entry})
			var ee *EntryError
			if !errors.As(err, &ee) || err.Error() != tc.want {
				t.Fatalf("New error\n got %v\nwant %s", err, tc.want)
			}
		})
	}
	// Several supplementary gids are not a contradiction.
	if _, err := New(entries(sel("unix:supplementary_gid:1", "unix:supplementary_gid:2"))); err != nil {
		t.Fatal(err)
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New(entries(
		sel("unix:uid:1"), sel("unix:uid:1"), // duplicate
		nil,                // no selectors
		sel("unix:user:a"), // ties with 0 and 1
	))
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v does not unwrap to a list", err)
	}
	if n := len(j.Unwrap()); n != 4 {
		t.Fatalf("got %d problems, want 4:\n%v", n, err)
	}
}

func TestEntriesAreCopies(t *testing.T) {
	in := entries(sel("unix:uid:2", "unix:path:/b"))
	r, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Selectors[0] = "unix:uid:3" // caller's slice must not be shared
	got := r.Entries()
	if want := sel("unix:path:/b", "unix:uid:2"); !slices.Equal(got[0].Selectors, want) {
		t.Fatalf("Entries()[0].Selectors = %v; want %v", got[0].Selectors, want)
	}
	got[0].Selectors[0] = "x"
	if _, ok := r.Match(sel("unix:path:/b", "unix:uid:2")); !ok {
		t.Fatal("modifying Entries() changed the registry")
	}
}

// BenchmarkMatch: 1000 entries, a process with typical selectors, matching
// the most specific entry.
func BenchmarkMatch(b *testing.B) {
	var es []Entry
	for i := range 1000 {
		s := sel(fmt.Sprintf("unix:uid:%d", 1000+i%50), fmt.Sprintf("unix:path:/usr/bin/app%d", i))
		if i%3 == 0 {
			s = append(s, fmt.Sprintf("unix:sha256:%064x", i))
		}
		es = append(es, Entry{ID: id(fmt.Sprintf("app%d", i)), Selectors: s, Index: i})
	}
	r, err := New(es)
	if err != nil {
		b.Fatal(err)
	}
	proc := sel("container:id:"+strings.Repeat("c", 64), "unix:gid:1012", "unix:group:app",
		"unix:path:/usr/bin/app312", fmt.Sprintf("unix:sha256:%064x", 312),
		"unix:supplementary_gid:27", "unix:uid:1012", "unix:user:app")
	slices.Sort(proc)
	if e, ok := r.Match(proc); !ok || e.Index != 312 {
		b.Fatalf("Match = %v, %v; want entry 312", e, ok)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Match(proc)
	}
}

func BenchmarkNew(b *testing.B) {
	var es []Entry
	for i := range 1000 {
		es = append(es, Entry{ID: id(fmt.Sprintf("app%d", i)), Index: i,
			Selectors: sel(fmt.Sprintf("unix:uid:%d", 1000+i%50), fmt.Sprintf("unix:path:/usr/bin/app%d", i))})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(es); err != nil {
			b.Fatal(err)
		}
	}
}
