//go:build linux

package spire_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/internal/spiretest"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// Two processes, different executables and uids, each get the ID SPIRE's
// own attestation gives them, with an SVID that chains to SPIRE's bundle.
func TestIdentifyTwoProcessesByPID(t *testing.T) {
	w := newWorld(t, spire.Options{})
	a, b := w.copyBin("/usr/bin/sleep", "sleep-a"), w.copyBin("/usr/bin/sleep", "sleep-b")
	w.sp.CreateEntry(td+"/app/a", "unix:uid:1000", "unix:path:"+a)
	w.sp.CreateEntry(td+"/app/b", "unix:uid:1001", "unix:path:"+b)
	w.sp.WaitEntry(td+"/app/a", "unix:uid:1000", "unix:path:"+a)
	w.sp.WaitEntry(td+"/app/b", "unix:uid:1001", "unix:path:"+b)
	ca, _ := w.start(a, 1000, "1000")
	cb, _ := w.start(b, 1001, "1000")
	for _, c := range []struct {
		pid  int
		want string
	}{{ca.Process.Pid, td + "/app/a"}, {cb.Process.Pid, td + "/app/b"}} {
		fp := w.fingerprint(c.pid)
		id, err := w.src.Identify(ctx(t), fp)
		if err != nil {
			t.Fatalf("pid %d: %v", c.pid, err)
		}
		if id.String() != c.want {
			t.Fatalf("pid %d is %s, want %s", c.pid, id, c.want)
		}
		sv, err := w.src.SVID(ctx(t), tlsconf.Workload{ID: id, PID: fp.PID})
		if err != nil {
			t.Fatal(err)
		}
		b, err := w.src.Bundles().GetX509BundleForTrustDomain(id.TrustDomain())
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		for _, c := range b.X509Authorities() {
			roots.AddCert(c)
		}
		if _, err := sv.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("SVID of %s does not chain to SPIRE's bundle: %v", id, err)
		}
		ans, ok := w.src.Lookup(fp)
		if !ok || len(ans.SVIDs) != 1 || ans.SVIDs[0].ID != id {
			t.Fatalf("Lookup = %+v, %t", ans, ok)
		}
	}
	if n := w.src.Streams(); n != 2 {
		t.Fatalf("%d streams for 2 processes", n)
	}
}

// A process no SPIRE entry matches gets an OK stream with no SVID: it is
// refused with ErrNoIdentity, and the message says it is SPIRE's answer.
func TestIdentifyNoEntry(t *testing.T) {
	w := newWorld(t, spire.Options{})
	c, _ := w.start(w.copyBin("/usr/bin/sleep", "sleep-x"), 1002, "1000")
	_, err := w.src.Identify(ctx(t), w.fingerprint(c.Process.Pid))
	if !errors.Is(err, workload.ErrNoIdentity) {
		t.Fatalf("unregistered process: %v, want ErrNoIdentity", err)
	}
	if !strings.Contains(err.Error(), "no SPIRE registration entry matches it") || !strings.Contains(err.Error(), w.sp.AdminSocket) {
		t.Fatalf("refusal %q does not say SPIRE has no entry, naming the agent", err)
	}
}

// THREATS I14: a stream ends with its process. The agent never ends a PID
// stream itself; the pidfd does, and then nothing is served for the
// process.
func TestThreat_I14_StreamEndsWithProcess(t *testing.T) {
	w := newWorld(t, spire.Options{})
	a := w.copyBin("/usr/bin/sleep", "sleep-a")
	w.sp.CreateEntry(td+"/app/a", "unix:path:"+a)
	w.sp.WaitEntry(td+"/app/a", "unix:path:"+a)
	c, _ := w.start(a, 1000, "1000")
	fp := w.fingerprint(c.Process.Pid)
	if _, err := w.src.Identify(ctx(t), fp); err != nil {
		t.Fatal(err)
	}
	// Another process of the same identity keeps its SVID while it lives.
	other, _ := w.start(a, 1000, "1000")
	ofp := w.fingerprint(other.Process.Pid)
	if _, err := w.src.Identify(ctx(t), ofp); err != nil {
		t.Fatal(err)
	}
	other.Process.Kill()
	other.Wait()
	eventually(t, "the other process's stream to end", func() bool { return w.src.Streams() == 1 })
	if _, err := w.src.SVID(ctx(t), tlsconf.Workload{ID: spiffeid.RequireFromString(td + "/app/a")}); err != nil {
		t.Fatalf("a live process's SVID was dropped with another process of its identity: %v", err)
	}
	c.Process.Kill()
	c.Wait() // reaped: the PID may now be reused
	eventually(t, "the stream of an exited process to end", func() bool { return w.src.Streams() == 0 })
	if _, err := w.src.Current(fp); !errors.Is(err, attest.ErrPeerGone) {
		t.Fatalf("Current after exit: %v, want ErrPeerGone", err)
	}
	if _, ok := w.src.Lookup(fp); ok {
		t.Fatal("an answer outlived its process")
	}
	if sv, err := w.src.SVID(ctx(t), tlsconf.Workload{ID: spiffeid.RequireFromString(td + "/app/a")}); err == nil {
		t.Fatalf("the SVID of %s outlived the last process it was issued for", sv.ID)
	}
}

// THREATS I14 / I11: SPIRE attests the PID when the stream starts. A
// process that execs a registered program after procmesh fingerprinted it
// must not get that program's identity: neither when the exec comes before
// procmesh pins the process (pinProcess sees it), nor between the pin and
// SPIRE's attestation (the answer is checked against the fingerprint once
// it has come).
func TestThreat_I14_ExecBeforeSPIREAttestsRefused(t *testing.T) {
	for _, when := range []string{"before the pin", "between the pin and SPIRE"} {
		t.Run(when, func(t *testing.T) {
			w := newWorld(t, spire.Options{FirstMessageTimeout: 3 * time.Second})
			victim := w.copyBin("/usr/bin/sleep", "victim")
			w.sp.CreateEntry(td+"/victim", "unix:path:"+victim)
			w.sp.WaitEntry(td+"/victim", "unix:path:"+victim)
			c, in := w.start("/bin/sh", 1000, "-c", "read line; exec "+victim+" 1000")
			fp := w.fingerprint(c.Process.Pid)
			exec := func() {
				fmt.Fprintln(in, "go")
				eventually(t, "the exec", func() bool { return w.fingerprint(c.Process.Pid).ExeIno != fp.ExeIno })
			}
			if when == "before the pin" {
				exec()
			} else {
				var once sync.Once
				spire.SetBeforeSubscribe(w.src, func(attest.Fingerprint) { once.Do(exec) })
			}
			id, err := w.src.Identify(ctx(t), fp)
			if err == nil {
				t.Fatalf("a process that exec'd %s after attestation got %s", victim, id)
			}
			if !errors.Is(err, attest.ErrPeerGone) {
				t.Fatalf("exec'd process: %v, want ErrPeerGone", err)
			}
			spire.SetBeforeSubscribe(w.src, nil)
			// As it runs now, it is the victim program, and SPIRE says so.
			id, err = w.src.Identify(ctx(t), w.fingerprint(c.Process.Pid))
			if err != nil || id != spiffeid.RequireFromString(td+"/victim") {
				t.Fatalf("the exec'd process fingerprinted anew: %s, %v", id, err)
			}
		})
	}
}

// Rotation: SPIRE pushes new SVIDs on the stream (entry TTL 10s); SVID
// serves the newest at once and never fails meanwhile.
func TestRotation(t *testing.T) {
	w := newWorld(t, spire.Options{})
	a, _ := w.registered("/usr/bin/sleep", "sleep-a", "-x509SVIDTTL", "10")
	_, fp, id := w.identified(a)
	serials := map[string]bool{}
	for deadline := time.Now().Add(40 * time.Second); len(serials) < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		sv, err := w.src.SVID(ctx(t), tlsconf.Workload{ID: id, PID: fp.PID})
		if err != nil {
			t.Fatalf("during rotation: %v", err)
		}
		if !time.Now().Before(sv.Certificates[0].NotAfter) {
			t.Fatalf("served an expired SVID (not after %s)", sv.Certificates[0].NotAfter)
		}
		serials[sv.Certificates[0].SerialNumber.String()] = true
	}
	if len(serials) < 3 {
		t.Fatalf("saw %d SVIDs in 40s with a 10s TTL: rotation did not reach procmesh", len(serials))
	}
}

// Agent killed and restarted (disk key manager): still-valid SVIDs keep
// serving, a new process is refused naming the agent while it is down,
// and streams re-subscribe once it is back.
func TestAgentRestart(t *testing.T) {
	w := newWorld(t, spire.Options{FirstMessageTimeout: 2 * time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond})
	a, _ := w.registered("/usr/bin/sleep", "sleep-a")
	_, fp1, id := w.identified(a)
	before, _ := w.src.Lookup(fp1)

	w.sp.KillAgent()
	eventually(t, "procmesh to notice the agent is gone", func() bool {
		return len(w.log.Lines("SPIRE agent stream failed")) > 0
	})
	if _, err := w.src.SVID(ctx(t), tlsconf.Workload{ID: id}); err != nil {
		t.Fatalf("a still-valid SVID stopped serving with the agent down: %v", err)
	}
	if got, err := w.src.Identify(ctx(t), fp1); err != nil || got != id {
		t.Fatalf("known process with the agent down: %s, %v", got, err)
	}
	c2, _ := w.start(a, 1000, "1000")
	_, err := w.src.Identify(ctx(t), w.fingerprint(c2.Process.Pid))
	if err == nil || !strings.Contains(err.Error(), w.sp.AdminSocket) {
		t.Fatalf("new process with the agent down: %v; want a refusal naming the agent", err)
	}

	w.sp.StartAgent()
	eventually(t, "the stream to re-subscribe", func() bool {
		ans, ok := w.src.Lookup(fp1)
		return ok && ans.At.After(before.At) && len(ans.SVIDs) == 1
	})
	c3, _ := w.start(a, 1000, "1000")
	if got, err := w.src.Identify(ctx(t), w.fingerprint(c3.Process.Pid)); err != nil || got != id {
		t.Fatalf("new process after the restart: %s, %v", got, err)
	}
	if len(w.log.Lines("SPIRE agent answers again")) == 0 {
		t.Errorf("no log line says the agent is back:\n%s", w.log.String())
	}
}

// THREATS F10: with the agent gone, an identity whose SVID has expired is
// refused, and the error names the agent and what went wrong.
func TestThreat_F10_ExpiredSVIDRefusedNamingAgent(t *testing.T) {
	w := newWorld(t, spire.Options{BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond})
	a, _ := w.registered("/usr/bin/sleep", "sleep-a", "-x509SVIDTTL", "8")
	_, fp, id := w.identified(a)
	w.sp.KillAgent()
	sv, err := w.src.SVID(ctx(t), tlsconf.Workload{ID: id})
	if err != nil {
		t.Fatalf("a still-valid SVID with the agent just gone: %v", err)
	}
	time.Sleep(time.Until(sv.Certificates[0].NotAfter) + 100*time.Millisecond)
	for _, err := range []error{
		func() error { _, err := w.src.SVID(ctx(t), tlsconf.Workload{ID: id}); return err }(),
		func() error { _, err := w.src.Identify(ctx(t), fp); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), w.sp.AdminSocket) || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("expired SVID with the agent down: %v; want a refusal naming the agent and saying it is unreachable", err)
		}
	}
}

// A process two SPIRE entries match gets two SVIDs; SPIRE's order among
// them is nothing the operator chose, so procmesh refuses the tie, naming
// both (as it refuses ties among its own entries, THREATS I8).
func TestIdentifyTwoEntriesRefused(t *testing.T) {
	w := newWorld(t, spire.Options{})
	a := w.copyBin("/usr/bin/sleep", "sleep-a")
	w.sp.CreateEntry(td+"/one", "unix:path:"+a)
	w.sp.CreateEntry(td+"/two", "unix:uid:1000")
	w.sp.WaitEntry(td+"/one", "unix:path:"+a)
	w.sp.WaitEntry(td+"/two", "unix:uid:1000")
	c, _ := w.start(a, 1000, "1000")
	_, err := w.src.Identify(ctx(t), w.fingerprint(c.Process.Pid))
	if !errors.Is(err, workload.ErrNoIdentity) || !strings.Contains(err.Error(), td+"/one") || !strings.Contains(err.Error(), td+"/two") {
		t.Fatalf("a process with two SPIRE entries: %v; want a refusal naming both", err)
	}
}

// Bundles: SPIRE's own trust domain as the server has it, the static
// bundles of trust_bundles for other trust domains, and a static root for
// SPIRE's trust domain added to SPIRE's.
func TestBundles(t *testing.T) {
	other := mustCA(t, "other.test")
	extra := mustCA(t, spiretest.TrustDomain)
	static := x509bundle.NewSet(other.Bundle())
	w := newWorld(t, spire.Options{Static: static})
	want, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString(spiretest.TrustDomain), w.sp.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.src.Bundles().GetX509BundleForTrustDomain(want.TrustDomain())
	if err != nil || !got.Equal(want) {
		t.Fatalf("SPIRE's bundle: %v, %v; want the server's", got, err)
	}
	if b, err := w.src.Bundles().GetX509BundleForTrustDomain(other.Bundle().TrustDomain()); err != nil || !b.Equal(other.Bundle()) {
		t.Fatalf("static bundle: %v", err)
	}
	static.Add(extra.Bundle()) // as a reload does, in place
	got, err = w.src.Bundles().GetX509BundleForTrustDomain(want.TrustDomain())
	if err != nil || len(got.X509Authorities()) != len(want.X509Authorities())+1 || !got.HasX509Authority(extra.Bundle().X509Authorities()[0]) {
		t.Fatalf("SPIRE's bundle plus a static root: %v", err)
	}
	if _, err := w.src.Bundles().GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("nowhere.test")); err == nil {
		t.Fatal("a bundle for a trust domain nobody has")
	}
}

func mustCA(t *testing.T, td string) *tlsconf.CA {
	t.Helper()
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: spiffeid.RequireTrustDomainFromString(td), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Federated trust domains: a bundle the SPIRE server holds for another
// trust domain, which an entry on this node federates with, reaches
// procmesh's bundles through the agent, and the answer says whom the
// process federates with.
func TestFederatedBundle(t *testing.T) {
	w := newWorld(t, spire.Options{})
	fed := mustCA(t, "partner.test")
	pem := filepath.Join(t.TempDir(), "partner.pem")
	if err := os.WriteFile(pem, fed.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sp.Server("bundle", "set", "-id", "spiffe://partner.test", "-path", pem, "-format", "pem"); err != nil {
		t.Fatal(err)
	}
	a := w.copyBin("/usr/bin/sleep", "sleep-a")
	w.sp.CreateEntryWith([]string{"-federatesWith", "spiffe://partner.test"}, td+"/app/a", "unix:path:"+a)
	w.sp.WaitEntry(td+"/app/a", "unix:path:"+a)
	c, _ := w.start(a, 1000, "1000")
	fp := w.fingerprint(c.Process.Pid)
	if _, err := w.src.Identify(ctx(t), fp); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the federated bundle to reach procmesh", func() bool {
		b, err := w.src.Bundles().GetX509BundleForTrustDomain(fed.Bundle().TrustDomain())
		return err == nil && b.Equal(fed.Bundle())
	})
	eventually(t, "the answer to name the federated trust domain", func() bool {
		ans, ok := w.src.Lookup(fp)
		return ok && len(ans.FederatesWith) == 1 && strings.Contains(ans.FederatesWith[0], "partner.test")
	})
}

// THREATS I14: the PID of an attested process is reused by another
// program. The old fingerprint gets nothing, neither the old answer nor
// SPIRE's answer for the new process; the new process, fingerprinted
// anew, gets its own identity.
func TestThreat_I14_PIDReuseGetsNothing(t *testing.T) {
	w := newWorld(t, spire.Options{})
	a, b := w.copyBin("/usr/bin/sleep", "sleep-a"), w.copyBin("/usr/bin/sleep", "sleep-b")
	w.sp.CreateEntry(td+"/app/a", "unix:path:"+a)
	w.sp.CreateEntry(td+"/app/b", "unix:path:"+b)
	w.sp.WaitEntry(td+"/app/a", "unix:path:"+a)
	w.sp.WaitEntry(td+"/app/b", "unix:path:"+b)
	var old attest.Fingerprint
	var reused *exec.Cmd
	for try := 0; reused == nil; try++ {
		if try == 5 {
			t.Fatal("could not get a PID reused in 5 tries")
		}
		c, _ := w.start(a, 1000, "1000")
		old = w.fingerprint(c.Process.Pid)
		if _, err := w.src.Identify(ctx(t), old); err != nil {
			t.Fatal(err)
		}
		c.Process.Kill()
		c.Wait()
		reused = w.startAtPID(c.Process.Pid, b, 1000, "1000")
	}
	for _, f := range []func() (spiffeid.ID, error){
		func() (spiffeid.ID, error) { return w.src.Identify(ctx(t), old) },
		func() (spiffeid.ID, error) { return w.src.Current(old) },
	} {
		if id, err := f(); !errors.Is(err, attest.ErrPeerGone) {
			t.Fatalf("the old fingerprint of reused PID %d: %s, %v; want ErrPeerGone", old.PID, id, err)
		}
	}
	if id, err := w.src.Identify(ctx(t), w.fingerprint(reused.Process.Pid)); err != nil || id.String() != td+"/app/b" {
		t.Fatalf("the new process at PID %d: %s, %v", old.PID, id, err)
	}
}

// procmesh without a SPIRE entry of its own is no authorized delegate: a
// process is refused within first_answer_timeout, and the error says what
// the operator must add.
func TestNotADelegate(t *testing.T) {
	w := newWorldWith(t, spiretest.Options{NoDelegateEntry: true}, spire.Options{FirstMessageTimeout: time.Second})
	c, _ := w.start("/usr/bin/sleep", 1000, "1000")
	_, err := w.src.Identify(ctx(t), w.fingerprint(c.Process.Pid))
	if err == nil || !strings.Contains(err.Error(), "authorized_delegates") || !strings.Contains(err.Error(), w.sp.AdminSocket) {
		t.Fatalf("procmesh not a delegate: %v; want an error naming the agent and authorized_delegates", err)
	}
}

// Streams are bounded (cache.max_processes): a process beyond the bound is
// refused, saying why, until another exits.
func TestMaxStreams(t *testing.T) {
	w := newWorld(t, spire.Options{MaxStreams: 2})
	a := w.copyBin("/usr/bin/sleep", "sleep-a")
	w.sp.CreateEntry(td+"/app/a", "unix:path:"+a)
	w.sp.WaitEntry(td+"/app/a", "unix:path:"+a)
	var cs []*exec.Cmd
	for range 3 {
		c, _ := w.start(a, 1000, "1000")
		cs = append(cs, c)
	}
	for _, c := range cs[:2] {
		if _, err := w.src.Identify(ctx(t), w.fingerprint(c.Process.Pid)); err != nil {
			t.Fatal(err)
		}
	}
	third := w.fingerprint(cs[2].Process.Pid)
	if _, err := w.src.Identify(ctx(t), third); err == nil || !strings.Contains(err.Error(), "cache.max_processes") {
		t.Fatalf("a third process with 2 streams allowed: %v", err)
	}
	cs[0].Process.Kill()
	cs[0].Wait()
	eventually(t, "a stream to end", func() bool { return w.src.Streams() == 1 })
	if _, err := w.src.Identify(ctx(t), third); err != nil {
		t.Fatalf("the third process once another exited: %v", err)
	}
}
