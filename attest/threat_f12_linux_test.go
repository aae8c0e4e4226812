//go:build linux

package attest

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// THREATS F12 / REDTEAM finding 6: the attacker (uid 1000) runs copies of
// a program extended with truncate(2) to a large sparse file, many at once,
// so that procmesh reads them all. These tests hold the first read (the
// beforeHash hook) and look at what the other attestations do meanwhile.

// sparseCopy copies the helper binary to name in bins.dir, owned by uid
// 1000, and extends it to size: a sparse file, as `truncate -s` makes.
func sparseCopy(t testing.TB, name string, size int64) string {
	t.Helper()
	path := filepath.Join(bins.dir, name)
	if _, err := copyExe(bins.a, path, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	return path
}

// attacker spawns exe as uid 1000, connected, and returns its peer and
// fingerprint.
func attacker(t *testing.T, a *Attestor, exe string) (*Peer, Fingerprint) {
	t.Helper()
	c := spawn(t, spawnOpts{exe: exe, cred: &syscall.Credential{Uid: 1000, Gid: 1000}})
	p := c.peer(true)
	fp, err := a.Fingerprint(p)
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	return p, fp
}

// heldHashes makes a's hash reads wait for release, counting them.
func heldHashes(t *testing.T, a *Attestor) (entered *atomic.Int32, release func()) {
	entered = new(atomic.Int32)
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	a.beforeHash = func() {
		entered.Add(1)
		<-ch
	}
	return entered, release
}

// attestAll attests every peer concurrently; wait returns the results.
func attestAll(a *Attestor, peers []*Peer, fps []Fingerprint) (wait func() ([]*Process, []error)) {
	procs, errs := make([]*Process, len(peers)), make([]error, len(peers))
	var wg sync.WaitGroup
	for i := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i], errs[i] = a.Attest(peers[i], fps[i])
		}()
	}
	return func() ([]*Process, []error) {
		wg.Wait()
		return procs, errs
	}
}

// until polls cond for up to 30 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestThreat_F12_SingleFlightPerFile: four processes of one 100 MiB sparse
// executable attested at once cost one read of it: the others wait for
// the first and take its hash from the cache.
func TestThreat_F12_SingleFlightPerFile(t *testing.T) {
	const n = 4
	big := sparseCopy(t, "f12-same", 100<<20)
	want := fileSHA256(t, big)
	a := New(Options{MaxConcurrentHashes: n})
	entered, release := heldHashes(t, a)
	peers, fps := make([]*Peer, n), make([]Fingerprint, n)
	for i := range n {
		peers[i], fps[i] = attacker(t, a, big)
	}
	wait := attestAll(a, peers, fps)
	id := fileID{fps[0].ExeDev, fps[0].ExeIno}
	until(t, "one read and three waiting, or a second read", func() bool {
		return entered.Load() > 1 || (entered.Load() == 1 && a.hashLocks.waiting(id) == n-1)
	})
	if got := entered.Load(); got != 1 {
		t.Errorf("%d reads of one executable started at once; want 1 (single flight per device and inode)", got)
	}
	release()
	procs, errs := wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("attest %d: %v", i, errs[i])
		}
		if procs[i].ExeSHA256 != want {
			t.Errorf("attest %d: sha256 %s, want %s", i, procs[i].ExeSHA256, want)
		}
	}
	if s := a.HashStats(); s.Files != 1 || s.Bytes != 100<<20 {
		t.Errorf("hash stats %+v, want one file of 100 MiB read", s)
	}
}

// TestThreat_F12_ConcurrentHashesBounded: with max_concurrent_hashes 1,
// three different sparse executables (cp --sparse copies, so different
// inodes) attested at once are read one after the other.
func TestThreat_F12_ConcurrentHashesBounded(t *testing.T) {
	const n = 3
	a := New(Options{MaxConcurrentHashes: 1})
	entered, release := heldHashes(t, a)
	peers, fps := make([]*Peer, n), make([]Fingerprint, n)
	for i := range n {
		peers[i], fps[i] = attacker(t, a, sparseCopy(t, "f12-copy"+string(rune('a'+i)), 64<<20))
	}
	wait := attestAll(a, peers, fps)
	until(t, "one read and two queued, or a second read", func() bool {
		return entered.Load() > 1 || (entered.Load() == 1 && a.hashQueued.Load() == n-1)
	})
	if got := entered.Load(); got != 1 {
		t.Errorf("%d executables read at once; want at most 1 (MaxConcurrentHashes)", got)
	}
	release()
	_, errs := wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("attest %d: %v", i, err)
		}
	}
	if s := a.HashStats(); s.Files != n {
		t.Errorf("hash stats %+v, want %d files read", s, n)
	}
}

// TestThreat_F12_TouchedWhileHashing: a file touched while its first
// reader is held is never served from a hash of the old key to a process
// that opened it afterwards; the held read fails (the file changed while
// it was read) and the later process's attestation reads it again.
func TestThreat_F12_TouchedWhileHashing(t *testing.T) {
	big := sparseCopy(t, "f12-touched", 16<<20)
	a := New(Options{})
	entered, release := heldHashes(t, a)
	p1, fp1 := attacker(t, a, big)
	wait1 := attestAll(a, []*Peer{p1}, []Fingerprint{fp1})
	until(t, "the first read", func() bool { return entered.Load() == 1 })
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(big, later, later); err != nil {
		t.Fatal(err)
	}
	p2, fp2 := attacker(t, a, big)
	wait2 := attestAll(a, []*Peer{p2}, []Fingerprint{fp2})
	id := fileID{fp1.ExeDev, fp1.ExeIno}
	until(t, "the second attestation to wait for the file", func() bool { return a.hashLocks.waiting(id) == 1 })
	release()
	if _, errs := wait1(); errs[0] == nil {
		t.Error("the held read of a file touched meanwhile succeeded")
	}
	procs, errs := wait2()
	if errs[0] != nil {
		t.Fatalf("attestation after the touch: %v", errs[0])
	}
	if want := fileSHA256(t, big); procs[0].ExeSHA256 != want {
		t.Errorf("sha256 %s, want %s", procs[0].ExeSHA256, want)
	}
	if s := a.HashStats(); s.Files != 2 {
		t.Errorf("hash stats %+v, want the file read twice (once per content key)", s)
	}
}

// BenchmarkAttestSparseTouched is the review's attack at the default
// limit: a 128 MiB sparse executable touched before every attestation, so
// the hash cache never hits. "skipped" is procmesh when no entry could use
// the hash; "read" when one could (or before F12's fix).
func BenchmarkAttestSparseTouched(b *testing.B) {
	big := sparseCopy(b, "f12-bench", DefaultHashSizeLimit)
	for _, bc := range []struct {
		name string
		need func([]string) bool
	}{{"skipped", func([]string) bool { return false }}, {"read", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			a := New(Options{})
			c := spawn(b, spawnOpts{exe: big, cred: &syscall.Credential{Uid: 1000, Gid: 1000}})
			p, err := ReadPeer(c.conn, true)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			fp, err := a.Fingerprint(p)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				now := time.Now()
				if err := os.Chtimes(big, now, now); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := a.AttestWith(p, fp, AttestOptions{SHA256: bc.need}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(a.HashStats().Bytes)/float64(b.N), "hashed-B/op")
		})
	}
}
