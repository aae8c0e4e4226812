//go:build linux

package attest

import (
	"errors"
	"os"
	"slices"
	"testing"
)

// TestPeerFromPID: explain's view of a process is the same attestation the
// proxy makes, here of the test process itself.
func TestPeerFromPID(t *testing.T) {
	a := New(Options{})
	p, err := a.PeerFromPID(int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.UID != uint32(os.Geteuid()) || p.GID != uint32(os.Getegid()) {
		t.Fatalf("peer uid/gid %d/%d, want %d/%d", p.UID, p.GID, os.Geteuid(), os.Getegid())
	}
	fp, err := a.Fingerprint(p)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := a.Attest(p, fp)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if !slices.Contains(proc.Selectors, "unix:path:"+self) {
		t.Fatalf("selectors %v lack unix:path:%s", proc.Selectors, self)
	}
	if _, err := a.PeerFromPID(1 << 30); !errors.Is(err, ErrPeerGone) {
		t.Fatalf("absent pid: %v, want ErrPeerGone", err)
	}
}
