//go:build linux

package spire_test

import (
	"sync"
	"testing"

	"github.com/procmesh/procmesh/internal/spiretest"
	"github.com/procmesh/procmesh/spire"
)

// noHashes keeps the agent from hashing the (large, race-enabled) test
// binary, the delegate, on every call: SPIRE v1.13.3's unix attestor
// hashes the caller's executable each time, uncached, and a binary over a
// positive workload_size_limit fails attestation altogether; -1 turns
// unix:sha256 off. The entries here use unix:path.
var noHashes = spiretest.Options{UnixPluginData: "workload_size_limit = -1"}

// 1,000 distinct live processes hold a stream each at once, without an
// error; all end with their processes.
func TestScale1000Processes(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	w := newWorldWith(t, noHashes, spire.Options{})
	a := w.copyBin("/usr/bin/sleep", "sleep-a")
	w.sp.CreateEntry(td+"/app/a", "unix:path:"+a)
	w.sp.WaitEntry(td+"/app/a", "unix:path:"+a)
	pids := make([]int, n)
	for i := range pids {
		c, _ := w.start(a, 1000, "1000")
		pids[i] = c.Process.Pid
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for _, pid := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id, err := w.src.Identify(ctx(t), w.fingerprint(pid))
			if err == nil && id.String() != td+"/app/a" {
				t.Errorf("pid %d is %s", pid, id)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed == 0 {
			t.Errorf("first error: %v", err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d processes got no identity", failed, n)
	}
	if got := w.src.Streams(); got != n {
		t.Fatalf("%d streams for %d live processes", got, n)
	}
}

// BenchmarkColdIdentity is a new process's first identity through SPIRE:
// pidfd pin, stream by PID (the agent attests the process and procmesh),
// first answer, parse. Compare tlsconf's BenchmarkMint (the built-in CA).
//
// Sub-benchmarks: "no-sha256" with the agent's unix attestor at
// workload_size_limit = -1; "sha256" with its default, where the agent
// hashes the delegate's executable (this test binary, procmesh in
// production) and the workload's on every new stream.
func BenchmarkColdIdentity(b *testing.B) {
	b.Run("no-sha256", func(b *testing.B) { benchColdIdentity(b, noHashes) })
	b.Run("sha256", func(b *testing.B) { benchColdIdentity(b, spiretest.Options{}) })
}

func benchColdIdentity(b *testing.B, so spiretest.Options) {
	w := newWorldWith(b, so, spire.Options{})
	a := w.copyBin("/usr/bin/sleep", "sleep-a")
	w.sp.CreateEntry(td+"/app/a", "unix:path:"+a)
	w.sp.WaitEntry(td+"/app/a", "unix:path:"+a)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		c, _ := w.start(a, 1000, "1000")
		fp := w.fingerprint(c.Process.Pid)
		b.StartTimer()
		if _, err := w.src.Identify(ctx(b), fp); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Process.Kill()
		c.Wait()
		b.StartTimer()
	}
}
