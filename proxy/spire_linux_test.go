//go:build linux

package proxy_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
)

var (
	spireA      = spiffeid.RequireFromString("spiffe://example.org/app/a")
	spireB      = spiffeid.RequireFromString("spiffe://example.org/app/b")
	spireVictim = spiffeid.RequireFromString("spiffe://example.org/victim")
)

// Two processes, different executables and uids, get the IDs SPIRE's own
// attestation gives them; the mTLS upstream, which trusts only SPIRE's
// bundle, records each on each of its requests.
func TestSPIRE_TwoProcessesTwoIDs(t *testing.T) {
	e, sp, src := newSPIREEnv(t, envOptions{}, spire.Options{})
	a, b := e.client("a", "a"), e.client("b", "b")
	sp.CreateEntry(spireA.String(), "unix:uid:1000", "unix:path:"+a)
	sp.CreateEntry(spireB.String(), "unix:uid:1001", "unix:path:"+b)
	sp.WaitEntry(spireA.String(), "unix:uid:1000", "unix:path:"+a)
	sp.WaitEntry(spireB.String(), "unix:uid:1001", "unix:path:"+b)
	for _, c := range []struct {
		bin  string
		uid  int
		want spiffeid.ID
	}{{a, 1000, spireA}, {b, 1001, spireB}} {
		rs, err := e.run(c.bin, c.uid, "origin", "PM_URL=http://echo.test/whoami", "PM_N=3")
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 3 {
			t.Fatalf("%d results, want 3", len(rs))
		}
		for _, r := range rs {
			if got := decodeReply(t, r).SPIFFEID; got != c.want.String() {
				t.Fatalf("uid %d: the upstream saw %s, want %s", c.uid, got, c.want)
			}
		}
	}
	seen := map[spiffeid.ID]int{}
	for _, r := range e.echo.Records() {
		seen[r.SPIFFEID]++
	}
	if seen[spireA] != 3 || seen[spireB] != 3 || len(seen) != 2 {
		t.Fatalf("the upstream recorded %v, want 3 requests each of %s and %s", seen, spireA, spireB)
	}
	// Both processes have exited: their streams end with them (THREATS I14).
	waitUntil(t, "the streams of exited processes to end", func() bool { return src.Streams() == 0 })
}

// A process no SPIRE entry matches is refused, with its selectors as
// procmesh attests them and a word on where entries live; the audit line
// says why.
func TestSPIRE_UnregisteredRefused(t *testing.T) {
	e, sp, _ := newSPIREEnv(t, envOptions{}, spire.Options{})
	c := e.client("c", "c")
	rs, err := e.run(c, 1002, "origin", "PM_URL=http://echo.test/whoami")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Status != 403 {
		t.Fatalf("unregistered process: %+v, want one 403", rs)
	}
	for _, want := range []string{"no SPIRE registration entry matches it", sp.AdminSocket, "unix:uid:1002", "unix:path:" + c, "spire-server entry create"} {
		if !strings.Contains(rs[0].Body, want) {
			t.Errorf("refusal lacks %q:\n%s", want, rs[0].Body)
		}
	}
	if len(e.audit.Lines(`"refused"`, "no SPIRE registration entry")) == 0 {
		t.Errorf("no audit line says why:\n%s", e.audit.String())
	}
	if n := len(e.echo.Records()); n != 0 {
		t.Fatalf("the upstream saw %d requests from an unregistered process", n)
	}
}

// THREATS I11 with the SPIRE provider: an unregistered program connects,
// writes its request and execs a program SPIRE has an entry for (path and
// sha256) before procmesh attests. SPIRE, asked by PID, would attest the
// registered program; the connect-time record refuses it.
func TestThreat_I11_ExecRaceRefusedWithSPIRE(t *testing.T) {
	e, sp, _ := newSPIREEnv(t, envOptions{records: true, hold: true}, spire.Options{})
	victim, attacker := e.client("victim", "victim"), e.client("attacker", "attacker")
	sels := []string{"unix:path:" + victim, "unix:sha256:" + fileSHA(t, victim)}
	sp.CreateEntry(spireVictim.String(), sels...)
	sp.WaitEntry(spireVictim.String(), sels...)
	rs := attack(t, e, "write-exec", attacker, victim)
	for _, r := range e.echo.Records() {
		if r.SPIFFEID == spireVictim {
			t.Fatalf("the upstream saw %s, the registered program's identity", spireVictim)
		}
	}
	if len(rs) != 1 || rs[0].Status != 403 || !strings.Contains(rs[0].Body, "ran another program when it called connect()") {
		t.Fatalf("got %+v, want one 403 naming the exec", rs)
	}
	// The victim itself, connecting, is what SPIRE says.
	got, err := e.run(victim, -1, "origin", "PM_URL=http://echo.test/own")
	if err != nil {
		t.Fatal(err)
	}
	if id := decodeReply(t, got[0]).SPIFFEID; id != spireVictim.String() {
		t.Fatalf("the registered program itself got %s", id)
	}
}

// load runs the "load" client as bin/uid until stop is called, which
// returns every result.
func (e *env) load(bin string, uid int, workers int) (stop func() []clientResult) {
	e.t.Helper()
	cmd := e.command(bin, uid, "load", "PM_URL=http://echo.test/load", fmt.Sprintf("PM_C=%d", workers))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var once sync.Once
	var rs []clientResult
	stop = func() []clientResult {
		once.Do(func() {
			in.Close()
			if err := cmd.Wait(); err != nil {
				e.t.Fatalf("load client: %v: %s", err, stderr.String())
			}
			rs = parseResults(e.t, stdout.String())
		})
		return rs
	}
	e.t.Cleanup(func() { cmd.Process.Kill(); stop() })
	return stop
}

// failures counts the results that are not 200.
func failures(rs []clientResult) (n int, first string) {
	for _, r := range rs {
		if r.Status != 200 || r.Err != "" {
			if n == 0 {
				first = fmt.Sprintf("status %d err %q body %q", r.Status, r.Err, r.Body)
			}
			n++
		}
	}
	return n, first
}

// Rotation under load (THREATS F2 with SPIRE): an entry TTL of 10s makes
// the agent push a new SVID every few seconds on the process's stream;
// requests on new connections never fail meanwhile.
func TestThreat_F2_SPIRERotationUnderLoad(t *testing.T) {
	e, sp, src := newSPIREEnv(t, envOptions{}, spire.Options{})
	a := e.client("a", "a")
	sp.CreateEntryWith([]string{"-x509SVIDTTL", "10"}, spireA.String(), "unix:path:"+a)
	sp.WaitEntry(spireA.String(), "unix:path:"+a)
	stop := e.load(a, 1000, 4)
	serials := map[string]bool{}
	for deadline := time.Now().Add(40 * time.Second); len(serials) < 3 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if sv, err := src.SVID(t.Context(), tlsconf.Workload{ID: spireA}); err == nil {
			serials[sv.Certificates[0].SerialNumber.String()] = true
		}
	}
	rs := stop()
	if len(serials) < 3 {
		t.Fatalf("saw %d SVIDs of %s in 40s with a 10s TTL: rotation did not reach procmesh", len(serials), spireA)
	}
	if n, first := failures(rs); n > 0 || len(rs) < 100 {
		t.Fatalf("%d of %d requests failed across %d rotations; first: %s", n, len(rs), len(serials)-1, first)
	}
	t.Logf("%d requests, %d SVIDs, no failure", len(rs), len(serials))
}

// Agent killed (SIGKILL) and restarted under load (THREATS F10): the
// running process's still-valid SVID keeps serving every request; a new
// process is refused meanwhile with a message naming the agent, and an
// audit line; after the restart new processes work again.
func TestThreat_F10_SPIREAgentRestartUnderLoad(t *testing.T) {
	e, sp, _ := newSPIREEnv(t, envOptions{}, spire.Options{FirstMessageTimeout: time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second})
	a := e.client("a", "a")
	sp.CreateEntry(spireA.String(), "unix:path:"+a)
	sp.WaitEntry(spireA.String(), "unix:path:"+a)
	stop := e.load(a, 1000, 4)
	waitUntil(t, "the load to reach the upstream", func() bool { return len(e.echo.Records()) > 20 })

	sp.KillAgent()
	waitUntil(t, "procmesh to see the agent gone", func() bool {
		return len(e.audit.Lines("SPIRE agent stream failed")) > 0
	})
	rs, err := e.run(a, 1000, "origin", "PM_URL=http://echo.test/new")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Status == 200 || !strings.Contains(rs[0].Body, sp.AdminSocket) {
		t.Fatalf("a new process with the agent down: %+v; want a refusal naming the agent", rs)
	}
	if len(e.audit.Lines(`"refused"`, sp.AdminSocket)) == 0 {
		t.Errorf("no audit line names the agent:\n%s", e.audit.String())
	}
	before := len(e.echo.Records())
	time.Sleep(2 * time.Second) // the load goes on with the agent down
	if during := len(e.echo.Records()) - before; during < 10 {
		t.Fatalf("%d requests reached the upstream in 2s with the agent down", during)
	}

	sp.StartAgent()
	waitUntil(t, "a new process to get its identity after the restart", func() bool {
		rs, err := e.run(a, 1000, "origin", "PM_URL=http://echo.test/after")
		return err == nil && len(rs) == 1 && rs[0].Status == 200
	})
	if n, first := failures(stop()); n > 0 {
		t.Fatalf("%d requests of the running process failed across the agent restart; first: %s", n, first)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
