//go:build linux

package attest

import (
	"os/user"
	"slices"
	"strings"
	"testing"
)

// TestAttestWithoutNames: an attestation without names has no unix:user or
// unix:group selector and makes no os/user lookup; WithNames adds exactly
// what Attest would have given, on a copy.
func TestAttestWithoutNames(t *testing.T) {
	a := New(Options{})
	lookups := 0
	realUser, realGroup := a.names.lookupUser, a.names.lookupGroup
	a.names.lookupUser = func(id string) (*user.User, error) { lookups++; return realUser(id) }
	a.names.lookupGroup = func(id string) (*user.Group, error) { lookups++; return realGroup(id) }

	c := spawn(t, spawnOpts{}) // runs as root: uid 0 and gid 0 have names
	p := c.peer(true)
	fp, err := a.Fingerprint(p)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := a.AttestWith(p, fp, AttestOptions{})
	if err != nil {
		t.Fatalf("AttestWith: %v", err)
	}
	if lookups != 0 {
		t.Errorf("%d os/user lookups without Names, want 0", lookups)
	}
	if bare.NamesLookedUp || bare.User != "" || bare.Group != "" {
		t.Errorf("without Names: NamesLookedUp %v, User %q, Group %q", bare.NamesLookedUp, bare.User, bare.Group)
	}
	for _, sel := range bare.Selectors {
		if strings.HasPrefix(sel, "unix:user:") || strings.HasPrefix(sel, "unix:group:") {
			t.Errorf("selector %q without Names", sel)
		}
	}

	full, err := a.Attest(p, fp)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	if !full.NamesLookedUp || !slices.Contains(full.Selectors, "unix:user:root") || !slices.Contains(full.Selectors, "unix:group:root") {
		t.Fatalf("Attest: NamesLookedUp %v, selectors %q; want unix:user:root and unix:group:root", full.NamesLookedUp, full.Selectors)
	}
	before := slices.Clone(bare.Selectors)
	named := a.WithNames(bare)
	if named == bare {
		t.Fatal("WithNames modified the shared Process instead of copying it")
	}
	if !slices.Equal(bare.Selectors, before) || bare.NamesLookedUp {
		t.Errorf("WithNames changed its argument: selectors %q", bare.Selectors)
	}
	if !slices.Equal(named.Selectors, full.Selectors) || named.User != "root" || named.Group != "root" || !named.NamesLookedUp {
		t.Errorf("WithNames selectors\n got %q\nwant %q (Attest's)", named.Selectors, full.Selectors)
	}
	if again := a.WithNames(named); again != named {
		t.Error("WithNames copied a Process that already had its names")
	}
}
