package workload_test

import (
	"bufio"
	"context"
	"errors"
	"net"
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
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// The test binary doubles as the peer process: with PM_PEER_SOCK set it
// opens PM_PEER_N connections to that socket, writes one byte on each, and
// waits for its stdin to close.
func TestMain(m *testing.M) {
	if victim := os.Getenv(envTraceExec); victim != "" {
		os.Exit(traceVictim(victim))
	}
	if sock := os.Getenv("PM_PEER_SOCK"); sock != "" {
		n := 1
		if os.Getenv("PM_PEER_N") == "many" {
			n = 50
		}
		for i := 0; i < n; i++ {
			c, err := net.Dial("unix", sock)
			if err != nil {
				os.Exit(3)
			}
			c.Write([]byte{'x'})
			defer c.Close()
		}
		bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var demoID = spiffeid.RequireFromString("spiffe://example.org/self")

type fixture struct {
	t     *testing.T
	ln    *net.UnixListener
	sock  string
	res   *workload.Resolver
	store *tlsconf.Store
	now   time.Time
	mu    sync.Mutex
}

func newFixture(t *testing.T, entries ...registry.Entry) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, sock: filepath.Join(dir, "s.sock"), now: time.Now()}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f.ln = ln
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: demoID.TrustDomain(), StateDir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	f.store = tlsconf.NewStore(ca, x509bundle.NewSet(ca.Bundle()), tlsconf.StoreOptions{})
	t.Cleanup(func() { f.store.Close() })
	reg, err := registry.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	f.res, err = workload.New(attest.New(attest.Options{}), reg, f.store, workload.Options{
		TTL: time.Minute, SweepInterval: time.Hour, Now: f.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.res.Close() })
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// peer starts a child that opens n ("one" or "many") connections and
// returns the accepted server ends; the child lives until stop is called.
func (f *fixture) peer(n string) (conns []*net.UnixConn, stop func()) {
	f.t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = []string{"GORACE=atexit_sleep_ms=0", "PM_PEER_SOCK=" + f.sock, "PM_PEER_N=" + n}
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	count := 1
	if n == "many" {
		count = 50
	}
	for i := 0; i < count; i++ {
		c, err := f.ln.AcceptUnix()
		if err != nil {
			f.t.Fatal(err)
		}
		f.t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stdin.Close()
			cmd.Wait()
		})
	}
	f.t.Cleanup(stop)
	return conns, stop
}

func selfEntry() registry.Entry {
	self, _ := os.Executable()
	return registry.Entry{ID: demoID, Selectors: []string{"unix:path:" + self}}
}

func TestResolveCachesPerProcess(t *testing.T) {
	f := newFixture(t, selfEntry())
	conns, _ := f.peer("one")
	for i := 0; i < 3; i++ {
		id, err := f.res.Resolve(context.Background(), conns[0])
		if err != nil {
			t.Fatal(err)
		}
		if id.ID() != demoID {
			t.Fatalf("resolved %s, want %s", id.ID(), demoID)
		}
	}
	if s := f.res.Stats(); s.Misses != 1 || s.Hits != 2 || s.Cached != 1 {
		t.Fatalf("stats %+v, want 1 miss, 2 hits, 1 cached", s)
	}
	// After the TTL the process is attested again.
	f.advance(2 * time.Minute)
	if _, err := f.res.Resolve(context.Background(), conns[0]); err != nil {
		t.Fatal(err)
	}
	if s := f.res.Stats(); s.Misses != 2 {
		t.Fatalf("stats %+v, want a second attestation after the TTL", s)
	}
}

// TestThreat_F4_ManyConnectionsOneAttestation: 50 connections of one new
// process resolved at once cost one attestation.
func TestThreat_F4_ManyConnectionsOneAttestation(t *testing.T) {
	f := newFixture(t, selfEntry())
	conns, _ := f.peer("many")
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.res.Resolve(context.Background(), c); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s := f.res.Stats(); s.Misses != 1 || s.Hits+s.Misses > 50 {
		t.Fatalf("stats %+v, want exactly 1 attestation for 50 connections", s)
	}
}

// TestThreat_I7_NoMatchListsSelectors: the error tells the operator which
// selectors the process has.
func TestThreat_I7_NoMatchListsSelectors(t *testing.T) {
	f := newFixture(t, registry.Entry{ID: demoID, Selectors: []string{"unix:path:/nonexistent"}})
	conns, _ := f.peer("one")
	_, err := f.res.Resolve(context.Background(), conns[0])
	var nm *workload.NoMatchError
	if !errors.As(err, &nm) {
		t.Fatalf("got %v, want *NoMatchError", err)
	}
	self, _ := os.Executable()
	for _, want := range []string{"matches no registration entry", "unix:path:" + self, "unix:uid:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestSetRegistryRematches: a removed identity stops resolving at once,
// without waiting for the cache TTL (THREATS F6 groundwork).
func TestSetRegistryRematches(t *testing.T) {
	f := newFixture(t, selfEntry())
	conns, _ := f.peer("one")
	if _, err := f.res.Resolve(context.Background(), conns[0]); err != nil {
		t.Fatal(err)
	}
	empty, _ := registry.New(nil)
	f.res.SetRegistry(empty)
	var nm *workload.NoMatchError
	if _, err := f.res.Resolve(context.Background(), conns[0]); !errors.As(err, &nm) {
		t.Fatalf("after removing the entry: %v, want *NoMatchError", err)
	}
	if s := f.res.Stats(); s.Misses != 1 {
		t.Fatalf("re-matching re-attested: %+v", s)
	}
}

// TestSweepDropsExitedProcesses: once a process exits, the sweeper drops
// its entry and its connection no longer resolves.
func TestSweepDropsExitedProcesses(t *testing.T) {
	f := newFixture(t, selfEntry())
	conns, stop := f.peer("one")
	if _, err := f.res.Resolve(context.Background(), conns[0]); err != nil {
		t.Fatal(err)
	}
	if n := f.res.Sweep(); n != 0 {
		t.Fatalf("swept %d live processes", n)
	}
	stop()
	if n := f.res.Sweep(); n != 1 {
		t.Fatalf("swept %d, want the exited process", n)
	}
	_, err := f.res.Resolve(context.Background(), conns[0])
	if !errors.Is(err, attest.ErrPeerGone) {
		t.Fatalf("resolving an exited peer: %v, want ErrPeerGone", err)
	}
	// The refusal still names the process that connected, for the audit.
	var pe *workload.PeerError
	if !errors.As(err, &pe) || pe.PID <= 0 || int(pe.PID) == os.Getpid() {
		t.Fatalf("resolving an exited peer: %#v, want a *PeerError naming its PID", err)
	}
}

// TestRematch: an identity resolved under one registry is re-checked under
// the next without re-attesting.
func TestRematch(t *testing.T) {
	f := newFixture(t, selfEntry())
	conns, _ := f.peer("one")
	id, err := f.res.Resolve(context.Background(), conns[0])
	if err != nil {
		t.Fatal(err)
	}
	gen := f.res.Generation()
	if again, err := f.res.Rematch(id); err != nil || again != id {
		t.Fatalf("rematch under the same entries: %v %v", again, err)
	}
	other := spiffeid.RequireFromString("spiffe://example.org/renamed")
	sel := selfEntry().Selectors
	reg, _ := registry.New([]registry.Entry{{ID: other, Selectors: sel}})
	f.res.SetRegistry(reg)
	if f.res.Generation() == gen {
		t.Fatal("generation did not change with the registry")
	}
	if again, err := f.res.Rematch(id); err != nil || again.ID() != other {
		t.Fatalf("rematch after renaming the entry: %v %v", again, err)
	}
	empty, _ := registry.New(nil)
	f.res.SetRegistry(empty)
	var nm *workload.NoMatchError
	if _, err := f.res.Rematch(id); !errors.As(err, &nm) {
		t.Fatalf("rematch after removing the entry: %v, want *NoMatchError", err)
	}
	if s := f.res.Stats(); s.Misses != 1 {
		t.Fatalf("rematch attested again: %+v", s)
	}
}

// BenchmarkResolveHit is the cost of a new connection from a process the
// cache knows: peer credentials, fingerprint, LRU hit, SVID store hit.
func BenchmarkResolveHit(b *testing.B) {
	dir := b.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: demoID.TrustDomain(), StateDir: filepath.Join(dir, "ca")})
	if err != nil {
		b.Fatal(err)
	}
	store := tlsconf.NewStore(ca, x509bundle.NewSet(ca.Bundle()), tlsconf.StoreOptions{})
	defer store.Close()
	reg, err := registry.New([]registry.Entry{selfEntry()})
	if err != nil {
		b.Fatal(err)
	}
	res, err := workload.New(attest.New(attest.Options{}), reg, store, workload.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer res.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.AcceptUnix()
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	if _, err := res.Resolve(context.Background(), peer); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := res.Resolve(context.Background(), peer); err != nil {
			b.Fatal(err)
		}
	}
}
