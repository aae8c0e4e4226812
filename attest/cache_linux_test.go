//go:build linux

package attest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hashOf hashes path through a.exeHash, as Attest does for /proc/PID/exe.
func hashOf(t *testing.T, a *Attestor, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	sum, _, err := a.exeHash(f, &st)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The hash cache never serves an old hash for new content, even when a
// same-size rewrite puts the old mtime back.
func TestHashCache_RewriteSameSizeSameMtime(t *testing.T) {
	a := New(Options{})
	path := filepath.Join(t.TempDir(), "exe")
	oldContent, newContent := []byte("content one"), []byte("content two")
	if err := os.WriteFile(path, oldContent, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := hashOf(t, a, path); got != sumOf(oldContent) {
		t.Fatalf("hash %s, want %s", got, sumOf(oldContent))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, newContent, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if got := hashOf(t, a, path); got != sumOf(newContent) {
		t.Fatalf("after a same-size rewrite with mtime restored: hash %s, want %s (cache served the old one?)", got, sumOf(newContent))
	}
	if n := a.hashes.Len(); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
}

func TestHashCache_Bounded(t *testing.T) {
	a := New(Options{HashCacheSize: 2})
	dir := t.TempDir()
	for _, name := range []string{"a", "b", "c", "d"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := hashOf(t, a, path); got != sumOf([]byte(name)) {
			t.Fatalf("%s: hash %s", name, got)
		}
	}
	if n := a.hashes.Len(); n != 2 {
		t.Fatalf("cache holds %d entries, want its bound 2", n)
	}
}

func TestNameCache(t *testing.T) {
	n := newNameCache(2)
	now := time.Unix(1000, 0)
	n.now = func() time.Time { return now }
	lookups := 0
	real := n.lookupUser
	n.lookupUser = func(id string) (*user.User, error) { lookups++; return real(id) }

	if got := n.user(0); got != "root" {
		t.Fatalf("user(0) = %q, want root", got)
	}
	if got := n.user(54321); got != "" {
		t.Fatalf("user(54321) = %q, want \"\" (no such account)", got)
	}
	n.user(0)
	n.user(54321)
	if lookups != 2 {
		t.Fatalf("%d lookups for 2 ids asked twice, want 2 (answers and failures cached)", lookups)
	}
	now = now.Add(nameTTL)
	n.user(0)
	if lookups != 3 {
		t.Fatalf("%d lookups after the TTL, want 3", lookups)
	}
	n.user(1)
	n.user(2)
	if l := n.cache.Len(); l != 2 {
		t.Fatalf("cache holds %d names, want its bound 2", l)
	}
	if got := n.group(0); got != "root" {
		t.Fatalf("group(0) = %q, want root", got)
	}
}
