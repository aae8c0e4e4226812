package workload_test

import (
	"context"
	"errors"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/workload"
)

// ownNames returns the unix:user and unix:group selectors of this test's
// own uid and gid, which its child processes share.
func ownNames(t *testing.T) (userSel, groupSel string) {
	t.Helper()
	u, err := user.LookupId(strconv.Itoa(os.Geteuid()))
	if err != nil {
		t.Fatalf("this test needs a uid with a name: %v", err)
	}
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Fatalf("this test needs a gid with a name: %v", err)
	}
	return "unix:user:" + u.Username, "unix:group:" + g.Name
}

func hasNameSelector(sels []string) bool {
	return slices.ContainsFunc(sels, func(s string) bool {
		return strings.HasPrefix(s, "unix:user:") || strings.HasPrefix(s, "unix:group:")
	})
}

// TestNamesOnlyWhenMatched: user and group names are not looked up while
// no entry uses them; a reload that adds an entry with unix:user matches
// the processes already cached (Resolve and Rematch) by their names.
func TestNamesOnlyWhenMatched(t *testing.T) {
	userSel, _ := ownNames(t)
	f := newFixture(t, selfEntry())
	conns, _ := f.peer("many")
	id, err := f.res.Resolve(context.Background(), conns[0])
	if err != nil {
		t.Fatal(err)
	}
	if id.Process.NamesLookedUp || hasNameSelector(id.Process.Selectors) {
		t.Fatalf("names looked up though no entry uses them: %q", id.Process.Selectors)
	}

	self, _ := os.Executable()
	named := spiffeid.RequireFromString("spiffe://example.org/named")
	reg, err := registry.New([]registry.Entry{selfEntry(), {ID: named, Selectors: []string{"unix:path:" + self, userSel}, Index: 1}})
	if err != nil {
		t.Fatal(err)
	}
	f.res.SetRegistry(reg)
	again, err := f.res.Resolve(context.Background(), conns[1])
	if err != nil {
		t.Fatal(err)
	}
	if again.ID() != named || !slices.Contains(again.Process.Selectors, userSel) {
		t.Errorf("after the reload resolved %s with %q, want %s by %s", again.ID(), again.Process.Selectors, named, userSel)
	}
	if s := f.res.Stats(); s.Misses != 1 {
		t.Errorf("stats %+v: the names were added by attesting again, want 1 attestation", s)
	}
	re, err := f.res.Rematch(id)
	if err != nil {
		t.Fatal(err)
	}
	if re.ID() != named || !re.Process.NamesLookedUp {
		t.Errorf("Rematch gave %s (names looked up: %v), want %s", re.ID(), re.Process.NamesLookedUp, named)
	}
	if id.Process.NamesLookedUp || hasNameSelector(id.Process.Selectors) {
		t.Error("Rematch changed the identity it was given")
	}
}

// TestNamesForPolicySelectors: names matched only by policy rules
// (registry.AlsoMatched) are looked up too.
func TestNamesForPolicySelectors(t *testing.T) {
	_, groupSel := ownNames(t)
	f := newFixture(t, selfEntry())
	reg, err := registry.New([]registry.Entry{selfEntry()}, registry.AlsoMatched(groupSel))
	if err != nil {
		t.Fatal(err)
	}
	f.res.SetRegistry(reg)
	conns, _ := f.peer("one")
	id, err := f.res.Resolve(context.Background(), conns[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(id.Process.Selectors, groupSel) {
		t.Errorf("selectors %q lack %s, which a policy rule matches", id.Process.Selectors, groupSel)
	}
}

// TestThreat_I7_RefusalListsNames: a refused process is told its user and
// group names too, though no entry uses them, so that one can.
func TestThreat_I7_RefusalListsNames(t *testing.T) {
	userSel, groupSel := ownNames(t)
	f := newFixture(t, registry.Entry{ID: demoID, Selectors: []string{"unix:path:/nonexistent"}})
	conns, _ := f.peer("one")
	_, err := f.res.Resolve(context.Background(), conns[0])
	var nm *workload.NoMatchError
	if !errors.As(err, &nm) {
		t.Fatalf("got %v, want *NoMatchError", err)
	}
	for _, want := range []string{userSel, groupSel} {
		if !slices.Contains(nm.Process.Selectors, want) || !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q lacks %s", err, want)
		}
	}
}
