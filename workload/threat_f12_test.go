package workload_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// The attacker of REDTEAM finding 6 (THREATS F12) is uid 1000: it copies a
// small program into its own directory, extends it with truncate(2) to
// 255 MiB (a sparse file: a few MB on disk, 255 MiB to read), touches it
// between connections to defeat the hash cache, and connects with it.

const attackerUID = 1000

// pinnedSHA is a unix:sha256 value no test file has.
const pinnedSHA = "unix:sha256:2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a"

// redteamEntries are the review's billing (fully pinned) and reports
// (uid and path) entries, plus extra.
func redteamEntries(extra ...registry.Entry) []registry.Entry {
	es := []registry.Entry{
		{ID: spiffeid.RequireFromString("spiffe://example.org/billing"),
			Selectors: []string{"unix:uid:1000", "unix:path:/usr/local/bin/billing", pinnedSHA}},
		{ID: spiffeid.RequireFromString("spiffe://example.org/reports"),
			Selectors: []string{"unix:uid:1000", "unix:path:/usr/local/bin/reports"}, Index: 1},
	}
	for i, e := range extra {
		e.Index = len(es) + i
		es = append(es, e)
	}
	return es
}

// f12Fixture is a resolver with the given options behind a socket uid 1000
// can connect to, and a directory uid 1000 owns.
type f12Fixture struct {
	t    *testing.T
	ln   *net.UnixListener
	sock string
	dir  string // the attacker's directory, owned by uid 1000
	prog string // a small program anyone may copy: this test binary
	att  *attest.Attestor
	res  *workload.Resolver

	mu  sync.Mutex
	now time.Time
}

func (f *f12Fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *f12Fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newF12Fixture(t *testing.T, ao attest.Options, wo workload.Options, entries []registry.Entry) *f12Fixture {
	t.Helper()
	base, err := os.MkdirTemp("", "procmesh-f12-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	f := &f12Fixture{t: t, sock: filepath.Join(base, "s.sock"), dir: filepath.Join(base, "u1000"),
		prog: filepath.Join(base, "notreg"), now: time.Now()}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := os.ReadFile(self)
	if err == nil {
		err = os.WriteFile(f.prog, prog, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f.dir, attackerUID, attackerUID); err != nil {
		t.Fatal(err)
	}
	f.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: f.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ln.Close() })
	if err := os.Chmod(f.sock, 0o777); err != nil {
		t.Fatal(err)
	}
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: demoID.TrustDomain(), StateDir: filepath.Join(base, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	store := tlsconf.NewStore(ca, x509bundle.NewSet(ca.Bundle()), tlsconf.StoreOptions{})
	t.Cleanup(func() { store.Close() })
	reg, err := registry.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	f.att = attest.New(ao)
	wo.TTL, wo.SweepInterval, wo.Now = time.Minute, time.Hour, f.clock
	f.res, err = workload.New(f.att, reg, store, wo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.res.Close() })
	return f
}

// asAttacker runs name with args as uid 1000 and fails the test if it fails.
func (f *f12Fixture) asAttacker(name string, args ...string) {
	f.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: attackerUID, Gid: attackerUID}}
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("%s %q as uid %d: %v\n%s", name, args, attackerUID, err, out)
	}
}

// exe makes the attacker's executable name: a copy of f.prog (a program
// that connects, see TestMain), extended to size with truncate -s when
// size > 0, as uid 1000 did.
func (f *f12Fixture) exe(name string, size int64) string {
	f.t.Helper()
	path := filepath.Join(f.dir, name)
	f.asAttacker("cp", f.prog, path)
	if size > 0 {
		f.asAttacker("truncate", "-s", strconv.FormatInt(size, 10), path)
	}
	return path
}

// connect starts exe as uid (a new process), which opens conns connections
// ("one" or "many"); it returns the server ends. The process lives until
// the test ends.
func (f *f12Fixture) connect(exe string, uid uint32, conns string) []*net.UnixConn {
	f.t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = []string{"GORACE=atexit_sleep_ms=0", "PM_PEER_SOCK=" + f.sock, "PM_PEER_N=" + conns}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	n := 1
	if conns == "many" {
		n = 50
	}
	if err := f.ln.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		f.t.Fatal(err)
	}
	var out []*net.UnixConn
	for range n {
		c, err := f.ln.AcceptUnix()
		if err != nil {
			f.t.Fatalf("accept from %s: %v", exe, err)
		}
		f.t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

func (f *f12Fixture) resolve(c *net.UnixConn) (*workload.Identity, error) {
	return f.res.Resolve(context.Background(), c)
}

// TestThreat_F12_UnusedHashNotRead: the review's reproduction. With the
// old 256 MiB limit, a 255 MiB sparse executable that no pinned entry could
// match (its path is not billing's) is never read, however often it is
// touched and run: each new process is refused with its selectors and
// costs procmesh no hashing.
func TestThreat_F12_UnusedHashNotRead(t *testing.T) {
	// The old limit, and no rate limit: only "hash what an entry could use"
	// stands between the attacker and three 255 MiB reads.
	f := newF12Fixture(t, attest.Options{HashSizeLimit: 256 << 20}, workload.Options{RatePerUID: -1}, redteamEntries())
	big := f.exe("big", 255<<20)
	for i := range 3 {
		f.asAttacker("touch", big)
		_, err := f.resolve(f.connect(big, attackerUID, "one")[0])
		var nm *workload.NoMatchError
		if !errors.As(err, &nm) {
			t.Fatalf("run %d: got %v, want a *NoMatchError", i, err)
		}
		if nm.Process.ExeHash != attest.HashSkipped || nm.Process.ExeSHA256 != "" {
			t.Errorf("run %d: hash %s %q, want it skipped", i, nm.Process.ExeHash, nm.Process.ExeSHA256)
		}
		if !strings.Contains(err.Error(), "unix:path:"+big) {
			t.Errorf("run %d: refusal %q does not list the path", i, err)
		}
	}
	if s := f.att.HashStats(); s.Files != 0 || s.Bytes != 0 {
		t.Fatalf("procmesh read %d bytes of %d executables to hash them; no entry could use a hash", s.Bytes, s.Files)
	}
}

// TestThreat_F12_HashSizeLimit: when a pinned entry could match (here its
// path is the attacker's file, as a bind mount in the attacker's own mount
// namespace would make it, REDTEAM finding 3), the 255 MiB file is over the
// default limit and not read; the refusal says why it has no unix:sha256.
func TestThreat_F12_HashSizeLimit(t *testing.T) {
	f := newF12Fixture(t, attest.Options{}, workload.Options{}, nil)
	big := f.exe("big", 255<<20)
	reg, err := registry.New(redteamEntries(registry.Entry{ID: spiffeid.RequireFromString("spiffe://example.org/big"),
		Selectors: []string{"unix:uid:1000", "unix:path:" + big, pinnedSHA}}))
	if err != nil {
		t.Fatal(err)
	}
	f.res.SetRegistry(reg)
	f.asAttacker("touch", big)
	_, err = f.resolve(f.connect(big, attackerUID, "one")[0])
	var nm *workload.NoMatchError
	if !errors.As(err, &nm) {
		t.Fatalf("got %v, want a *NoMatchError", err)
	}
	if nm.Process.ExeHash != attest.HashOverLimit {
		t.Errorf("hash status %s, want over limit", nm.Process.ExeHash)
	}
	if want := "no unix:sha256 selector: the executable is 267386880 bytes, over attest.hash_size_limit"; !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %q lacks %q", err, want)
	}
	if s := f.att.HashStats(); s.Bytes != 0 {
		t.Fatalf("procmesh read %d bytes of a 255 MiB executable; the default limit is %d", s.Bytes, attest.DefaultHashSizeLimit)
	}
}

// TestThreat_F12_RatePerUID: new processes of one uid are attested at most
// at its rate; the refusal names the key and when to retry. A process
// already attested is not limited, nor is another uid, and the budget
// refills with time.
func TestThreat_F12_RatePerUID(t *testing.T) {
	f := newF12Fixture(t, attest.Options{}, workload.Options{RatePerUID: 1, BurstPerUID: 2}, redteamEntries())
	small := f.exe("small", 0)
	first := f.connect(small, attackerUID, "many")
	var nm *workload.NoMatchError
	if _, err := f.resolve(first[0]); !errors.As(err, &nm) {
		t.Fatalf("first process: got %v, want a *NoMatchError", err)
	}
	if _, err := f.resolve(f.connect(small, attackerUID, "one")[0]); !errors.As(err, &nm) {
		t.Fatalf("second process: got %v, want a *NoMatchError", err)
	}
	third := f.connect(small, attackerUID, "one")[0]
	_, err := f.resolve(third)
	var rl *workload.RateLimitError
	if !errors.As(err, &rl) {
		t.Fatalf("third process of uid 1000 within a second: got %v, want a *RateLimitError", err)
	}
	for _, want := range []string{"uid 1000", "attest.rate_per_uid: 1 per second", "attest.burst_per_uid: 2", "retry in 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q lacks %q", err, want)
		}
	}
	if _, err := f.resolve(first[1]); !errors.As(err, &nm) {
		t.Errorf("a new connection of the first (known) process: got %v, want its *NoMatchError from the cache", err)
	}
	if _, err := f.resolve(f.connect(small, 0, "one")[0]); !errors.As(err, &nm) {
		t.Errorf("a process of uid 0: got %v, want a *NoMatchError (uid 1000's budget is its own)", err)
	}
	f.advance(time.Second)
	if _, err := f.resolve(third); !errors.As(err, &nm) {
		t.Errorf("third process a second later: got %v, want a *NoMatchError", err)
	}
}

// TestThreat_F12_HashingSpendsBudget: an attestation that reads an
// executable to hash it spends one more token per MiB, so a uid cannot
// make procmesh hash at the attestation rate.
func TestThreat_F12_HashingSpendsBudget(t *testing.T) {
	f := newF12Fixture(t, attest.Options{}, workload.Options{RatePerUID: 1, BurstPerUID: 10}, nil)
	big := f.exe("big", 100<<20)
	small := f.exe("small", 0)
	reg, err := registry.New(redteamEntries(registry.Entry{ID: spiffeid.RequireFromString("spiffe://example.org/big"),
		Selectors: []string{"unix:uid:1000", "unix:path:" + big, pinnedSHA}}))
	if err != nil {
		t.Fatal(err)
	}
	f.res.SetRegistry(reg)
	_, err = f.resolve(f.connect(big, attackerUID, "one")[0])
	var nm *workload.NoMatchError
	if !errors.As(err, &nm) || nm.Process.ExeHash != attest.HashDone {
		t.Fatalf("got %v, want a *NoMatchError for a hashed executable", err)
	}
	_, err = f.resolve(f.connect(small, attackerUID, "one")[0])
	var rl *workload.RateLimitError
	if !errors.As(err, &rl) {
		t.Fatalf("next new process after a 100 MiB hash (101 tokens of 10): got %v, want a *RateLimitError", err)
	}
	if rl.RetryAfter < 91*time.Second {
		t.Errorf("retry after %s, want the 91 tokens of debt plus one at 1 per second", rl.RetryAfter)
	}
}

// TestThreat_F12_KnownProcessNotLimited: a process the cache knows is
// attested again when its attestation expires without spending its uid's
// budget, so a uid at its limit does not lose its running workloads.
func TestThreat_F12_KnownProcessNotLimited(t *testing.T) {
	f := newF12Fixture(t, attest.Options{}, workload.Options{RatePerUID: 0.001, BurstPerUID: 1}, redteamEntries())
	small := f.exe("small", 0)
	known := f.connect(small, attackerUID, "many")
	var nm *workload.NoMatchError
	if _, err := f.resolve(known[0]); !errors.As(err, &nm) {
		t.Fatalf("first process: got %v, want a *NoMatchError", err)
	}
	var rl *workload.RateLimitError
	if _, err := f.resolve(f.connect(small, attackerUID, "one")[0]); !errors.As(err, &rl) {
		t.Fatalf("second process: got %v, want a *RateLimitError (burst 1)", err)
	}
	f.advance(2 * time.Minute) // past the TTL; 0.12 tokens refilled
	if _, err := f.resolve(known[1]); !errors.As(err, &nm) {
		t.Fatalf("known process after its TTL: got %v, want it attested again (*NoMatchError)", err)
	}
	if s := f.res.Stats(); s.Misses != 2 {
		t.Errorf("stats %+v, want 2 attestations (the first process twice)", s)
	}
}
