//go:build linux

package spire_test

import (
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
)

const audience = "https://sts.example"

// SPIRE issues each process, by PID, a JWT-SVID naming its own identity,
// which validates with go-spiffe against the JWT bundle SPIRE streams.
func TestJWTSVIDByPID(t *testing.T) {
	w := newWorld(t, spire.Options{})
	a, _ := w.registered("/usr/bin/sleep", "sleep-a")
	b, _ := w.registered("/usr/bin/sleep", "sleep-b")
	eventually(t, "SPIRE's JWT bundle", func() bool {
		_, ok := w.src.JWTBundles().Get(spiffeid.RequireTrustDomainFromString("example.org"))
		return ok
	})
	for _, bin := range []string{a, b} {
		_, fp, id := w.identified(bin)
		sv, err := w.src.JWTSVID(ctx(t), tlsconf.Workload{ID: id, PID: fp.PID}, []string{audience, "other"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := jwtsvid.ParseAndValidate(sv.Marshal(), w.src.JWTBundles(), []string{audience})
		if err != nil {
			t.Fatalf("SPIRE's JWT-SVID for %s does not validate against SPIRE's JWT bundle: %v", id, err)
		}
		if got.ID != id {
			t.Fatalf("process %d (%s) got a JWT-SVID for %s", fp.PID, id, got.ID)
		}
		// Another identity cannot be asked for through this PID.
		other := spiffeid.RequireFromString(td + "/app/a")
		if id == other {
			other = spiffeid.RequireFromString(td + "/app/b")
		}
		if _, err := w.src.JWTSVID(ctx(t), tlsconf.Workload{ID: other, PID: fp.PID}, []string{audience}); err == nil {
			t.Fatalf("process %d (%s) got a JWT-SVID asked for as %s", fp.PID, id, other)
		}
	}
	// A PID the source does not track (never attested) gets nothing.
	c, _ := w.start(a, 1000, "1000")
	if _, err := w.src.JWTSVID(ctx(t), tlsconf.Workload{ID: spiffeid.RequireFromString(td + "/app/a"), PID: int32(c.Process.Pid)}, []string{audience}); !errors.Is(err, attest.ErrPeerGone) {
		t.Fatalf("an untracked PID: %v, want ErrPeerGone", err)
	}
}

// THREATS I14: the process exits while its JWT-SVID is being fetched, and
// another program, another identity in SPIRE, takes its PID before SPIRE
// attests it: SPIRE answers for the new process, and procmesh gives
// nobody that token. After the exit, the PID gets no token at all.
func TestThreat_I14_JWTSVIDNotForReusedPID(t *testing.T) {
	w := newWorld(t, spire.Options{})
	a, _ := w.registered("/usr/bin/sleep", "sleep-a")
	b, _ := w.registered("/usr/bin/sleep", "sleep-b")
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("could not get a PID reused in 5 tries")
		}
		c, fp, id := w.identified(a)
		reused := false
		spire.SetBeforeFetchJWT(w.src, func(attest.Fingerprint) {
			c.Process.Kill()
			c.Wait()
			if r := w.startAtPID(c.Process.Pid, b, 1000, "1000"); r != nil {
				reused = true
			}
		})
		sv, err := w.src.JWTSVID(ctx(t), tlsconf.Workload{ID: id, PID: fp.PID}, []string{audience})
		spire.SetBeforeFetchJWT(w.src, nil)
		if !reused {
			continue
		}
		if err == nil {
			t.Fatalf("the caller %s got a JWT-SVID for %s through its reused PID", id, sv.ID)
		}
		if !errors.Is(err, attest.ErrPeerGone) {
			t.Fatalf("reused PID: %v, want ErrPeerGone", err)
		}
		eventually(t, "the stream of the exited process to end", func() bool { return w.src.Streams() == 0 })
		if _, err := w.src.JWTSVID(ctx(t), tlsconf.Workload{ID: id, PID: fp.PID}, []string{audience}); err == nil {
			t.Fatal("a JWT-SVID for an exited process's PID")
		}
		return
	}
}
