package registry

import (
	"slices"
	"testing"
)

// I17: an entry matches a traced process, or one running injected code,
// only when it allows that; a process refused by the specific entry may
// match a less specific one that allows it; Refusing names the entries
// that refused.
func TestThreat_I17_EntryAllow(t *testing.T) {
	es := entries(
		sel("unix:uid:1000", "unix:path:/usr/bin/billing"),
		sel("unix:uid:1000", "unix:path:/usr/bin/debugged"),
		sel("unix:uid:1000", "unix:path:/usr/bin/plugins"),
		sel("unix:uid:2000"),
	)
	es[1].Allow = Allow{Traced: true}
	es[2].Allow = Allow{InjectedCode: true}
	es[3].Allow = Allow{Traced: true, InjectedCode: true}
	r, err := New(es)
	if err != nil {
		t.Fatal(err)
	}
	traced, injected, both := Allow{Traced: true}, Allow{InjectedCode: true}, Allow{Traced: true, InjectedCode: true}
	for _, tc := range []struct {
		name    string
		sels    []string
		has     Allow
		want    int   // entry index, -1 none
		refused []int // Refusing
	}{
		{"billing clean", sel("unix:path:/usr/bin/billing", "unix:uid:1000"), Allow{}, 0, nil},
		{"billing traced", sel("unix:path:/usr/bin/billing", "unix:uid:1000"), traced, -1, []int{0}},
		{"billing injected", sel("unix:path:/usr/bin/billing", "unix:uid:1000"), injected, -1, []int{0}},
		{"debugged traced", sel("unix:path:/usr/bin/debugged", "unix:uid:1000"), traced, 1, nil},
		{"debugged injected", sel("unix:path:/usr/bin/debugged", "unix:uid:1000"), injected, -1, []int{1}},
		{"plugins injected", sel("unix:path:/usr/bin/plugins", "unix:uid:1000"), injected, 2, nil},
		{"plugins traced", sel("unix:path:/usr/bin/plugins", "unix:uid:1000"), both, -1, []int{2}},
		{"uid 2000 anything", sel("unix:path:/usr/bin/billing", "unix:uid:2000"), both, 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := r.MatchProcess(tc.sels, tc.has)
			got := -1
			if ok {
				got = e.Index
			}
			if got != tc.want {
				t.Errorf("MatchProcess = entry %d, want %d", got, tc.want)
			}
			var refused []int
			for _, e := range r.Refusing(tc.sels, tc.has) {
				refused = append(refused, e.Index)
			}
			if !slices.Equal(refused, tc.refused) {
				t.Errorf("Refusing = %v, want %v", refused, tc.refused)
			}
			if tc.has == (Allow{}) {
				if m, ok := r.Match(tc.sels); ok != (got >= 0) || (ok && m.Index != got) {
					t.Errorf("Match differs from MatchProcess with nothing to allow")
				}
			}
		})
	}

	// A less specific entry that allows a tracer takes the traced process
	// the specific entry refuses.
	es = entries(
		sel("unix:uid:1000", "unix:path:/usr/bin/billing"),
		sel("unix:uid:1000"),
	)
	es[1].Allow = Allow{Traced: true}
	r, err = New(es)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := r.MatchProcess(sel("unix:path:/usr/bin/billing", "unix:uid:1000"), traced); !ok || e.Index != 1 {
		t.Errorf("traced billing: matched %v entry %d, want the entry allowing tracers (1)", ok, e.Index)
	}
}
