package workload_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
)

// TestSHA256OnlyWhenUsable: the executable is not hashed while no entry
// pins one; a reload that adds a pinned entry the process could match
// hashes it for the processes already cached (Resolve) and for live
// identities (Rematch), so the pinned entry wins as it would have.
func TestSHA256OnlyWhenUsable(t *testing.T) {
	f := newFixture(t, selfEntry())
	conns, _ := f.peer("many")
	id, err := f.res.Resolve(context.Background(), conns[0])
	if err != nil {
		t.Fatal(err)
	}
	if id.Process.ExeHash != attest.HashSkipped || id.Process.ExeSHA256 != "" {
		t.Fatalf("hash %s %q though no entry pins one", id.Process.ExeHash, id.Process.ExeSHA256)
	}

	self, _ := os.Executable()
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	pinnedID := spiffeid.RequireFromString("spiffe://example.org/pinned")
	reg, err := registry.New([]registry.Entry{selfEntry(),
		{ID: pinnedID, Selectors: []string{"unix:path:" + self, "unix:sha256:" + hex.EncodeToString(sum[:])}, Index: 1}})
	if err != nil {
		t.Fatal(err)
	}
	f.res.SetRegistry(reg)

	re, err := f.res.Rematch(id)
	if err != nil {
		t.Fatalf("Rematch: %v", err)
	}
	if re.ID() != pinnedID || re.Process.ExeHash != attest.HashDone {
		t.Errorf("Rematch: %s with hash %s, want %s with the hash added", re.ID(), re.Process.ExeHash, pinnedID)
	}
	again, err := f.res.Resolve(context.Background(), conns[1])
	if err != nil {
		t.Fatal(err)
	}
	if again.ID() != pinnedID || again.Process.ExeSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("Resolve after reload: %s sha %q, want %s", again.ID(), again.Process.ExeSHA256, pinnedID)
	}
	if s := f.res.Stats(); s.Misses != 1 {
		t.Errorf("stats %+v: the cached process was attested again; want its hash added", s)
	}
}
