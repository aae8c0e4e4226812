//go:build linux

package attest

import (
	"errors"
	"strings"
	"testing"
)

// I2: the peer exits between connect and attestation. The hooks kill and
// reap it before any /proc read, or between the reads and the final check.
func TestThreat_I2_PIDExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		between bool // kill in beforeVerify rather than beforeRead
	}{
		{name: "pidfd/before reads"},
		{name: "pidfd/between reads", between: true},
		{name: "start time/before reads", opts: Options{DisablePIDFD: true}},
		{name: "start time/between reads", opts: Options{DisablePIDFD: true}, between: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(tc.opts)
			c := spawn(t, spawnOpts{})
			p := c.peer(true)
			fp, err := a.Fingerprint(p)
			if err != nil {
				t.Fatal(err)
			}
			called := false
			hook := func() { called = true; c.kill() }
			if tc.between {
				a.beforeVerify = hook
			} else {
				a.beforeRead = hook
			}
			proc, err := a.Attest(p, fp)
			if !called {
				t.Fatal("hook not called")
			}
			if !errors.Is(err, ErrPeerGone) || proc != nil {
				t.Fatalf("Attest of an exited peer: %+v, %v; want ErrPeerGone", proc, err)
			}
			if a.Alive(fp) {
				t.Error("Alive = true for an exited peer")
			}
			if _, err := a.Fingerprint(p); !errors.Is(err, ErrPeerGone) {
				t.Errorf("Fingerprint of an exited peer: %v, want ErrPeerGone", err)
			}
		})
	}
}

// I2: the peer's PID is reused (via ns_last_pid) by a process running the
// same executable under the same uid, so only the pidfd or the start time
// tells them apart. Attestation must fail, never describe the new owner.
func TestThreat_I2_PIDReuse(t *testing.T) {
	for _, tc := range []pidReuseCase{
		// The pidfd alone (readTicks cleared) refuses the new owner.
		{name: "pidfd/before attest"},
		{name: "pidfd/during attest", during: true},
		{name: "pidfd/fingerprint after reuse", fresh: true},
		// The start time alone refuses it once a Fingerprint was taken.
		{name: "start time/before attest", opts: Options{DisablePIDFD: true}},
		{name: "start time/during attest", opts: Options{DisablePIDFD: true}, during: true},
		// A Fingerprint first taken after the reuse is refused because the
		// process started after ReadPeer read the credentials.
		{name: "start time/fingerprint after reuse", opts: Options{DisablePIDFD: true}, readTicks: true, fresh: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Another test package may take the freed PID between
			// ns_last_pid and our fork; then start over with a new victim.
			for attempt := 1; !tc.run(t); attempt++ {
				if attempt == 10 {
					t.Fatal("another process took the freed PID 10 times running")
				}
			}
		})
	}
}

type pidReuseCase struct {
	name      string
	opts      Options
	during    bool // reuse in beforeVerify rather than before Attest
	readTicks bool // keep the "started after ReadPeer" check
	fresh     bool // take the Fingerprint after the reuse
}

// run runs the case once; it reports false when another process took the
// freed PID, so nothing was tested.
func (tc pidReuseCase) run(t *testing.T) bool {
	t.Helper()
	a := New(tc.opts)
	c := spawn(t, spawnOpts{})
	p := c.peer(true)
	if !tc.readTicks {
		p.readTicks = 0
	}
	fp, err := a.Fingerprint(p)
	if err != nil {
		t.Fatal(err)
	}
	var reused *child
	called := false
	reuse := func() {
		called = true
		waitTickAfter(t, max(fp.StartTime, p.readTicks))
		reused = spawnAtPID(t, c, bins.a)
	}
	if tc.fresh {
		if reuse(); reused == nil {
			return false
		}
		fp2, err := a.Fingerprint(p)
		if !errors.Is(err, ErrPeerGone) {
			t.Fatalf("Fingerprint after PID reuse: %+v, %v; want ErrPeerGone", fp2, err)
		}
		checkOnlyStartTimeDiffers(t, a, fp, reused)
		return true
	}
	if tc.during {
		a.beforeVerify = reuse
	} else {
		reuse()
	}
	proc, err := a.Attest(p, fp)
	if !called {
		t.Fatal("reuse hook not called")
	}
	if reused == nil {
		return false
	}
	if !errors.Is(err, ErrPeerGone) || proc != nil {
		t.Fatalf("Attest after PID reuse: %+v, %v; want ErrPeerGone", proc, err)
	}
	if a.Alive(fp) {
		t.Error("Alive = true for a reused PID")
	}
	checkOnlyStartTimeDiffers(t, a, fp, reused)
	return true
}

// checkOnlyStartTimeDiffers shows the new owner of fp's PID differs from fp
// in start time (and pidfs inode) only, so the refusal came from those.
func checkOnlyStartTimeDiffers(t *testing.T, a *Attestor, fp Fingerprint, reused *child) {
	t.Helper()
	now, err := a.fingerprint(reused.pid(), -1, 0, 0)
	if err != nil {
		t.Fatalf("fingerprint of the new owner: %v", err)
	}
	now.PIDFDIno = fp.PIDFDIno
	if got := fp.changes(now); !strings.HasPrefix(got, "start time") || strings.Contains(got, ",") {
		t.Fatalf("new owner differs by %q, want the start time only", got)
	}
}
