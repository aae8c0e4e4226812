//go:build linux

package wlapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/internal/credread"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/internal/spiretest"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/wlapi"
	"github.com/procmesh/procmesh/workload"
)

var (
	nodeTD     = spiffeid.RequireTrustDomainFromString("example.org")
	upstreamTD = spiffeid.RequireTrustDomainFromString("upstream.test")
	idA        = spiffeid.RequireFromString("spiffe://example.org/billing")
	idB        = spiffeid.RequireFromString("spiffe://example.org/payments")
)

// env is a Workload API server over the real attestor and resolver, the
// builtin CA and SVID store, on a Unix socket in a directory every uid can
// reach.
type env struct {
	t        *testing.T
	dir      string
	sock     string
	resolver *workload.Resolver
	srv      *wlapi.Server
	audit    *logtest.Buffer
	gate     chan struct{} // hold: closed by release

	// The builtin CA, the upstream trust domain's CA, and the set of
	// bundles the Store verifies with and the server hands out from
	// (cmd/procmesh's node.bundles, which a reload updates).
	ca, upCA *tlsconf.CA
	bundles  *x509bundle.Set
}

type envOptions struct {
	ttl     time.Duration    // SVID lifetime; default 1h
	records bool             // the kernel's connect-time record (THREATS I11)
	hold    bool             // accept only at release
	spire   *spiretest.SPIRE // identity source: SPIRE's agent, not the builtin CA
	// jwtRotation is how long a JWT key signs; default 24h.
	jwtRotation time.Duration
	// maxUnattested is Options.MaxUnattestedPerUID.
	maxUnattested int
	// rate and burst are workload.Options.RatePerUID and BurstPerUID.
	rate  float64
	burst int
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "procmesh-wlapi-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, sock: filepath.Join(dir, "workload.sock"), audit: &logtest.Buffer{}}
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: nodeTD, StateDir: filepath.Join(dir, "state"), SVIDTTL: o.ttl})
	if err != nil {
		t.Fatal(err)
	}
	bundles, err := tlsconf.LoadBundles(ca.Bundle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// procmesh trusts another trust domain for its routes (trust_bundles):
	// that bundle is not the workloads' to see.
	upCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: upstreamTD, StateDir: filepath.Join(dir, "upstate")})
	if err != nil {
		t.Fatal(err)
	}
	bundles.Add(upCA.Bundle())
	e.ca, e.upCA, e.bundles = ca, upCA, bundles
	keys, err := tlsconf.LoadOrCreateJWTKeys(tlsconf.JWTKeyOptions{TrustDomain: nodeTD, StateDir: filepath.Join(dir, "state"), Rotation: o.jwtRotation})
	if err != nil {
		t.Fatal(err)
	}
	store := tlsconf.NewStore(ca, bundles, tlsconf.StoreOptions{JWT: keys})
	t.Cleanup(func() { store.Close() })
	att := attest.New(attest.Options{})
	var src tlsconf.Source = store
	if o.spire != nil {
		sp, err := spire.New(spire.Options{AdminSocket: o.spire.AdminSocket, Alive: att.Alive})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sp.Close() })
		src = sp
	}
	reg, err := registry.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	wopts := workload.Options{RatePerUID: o.rate, BurstPerUID: o.burst}
	if o.records {
		rec, err := connrecord.Open(connrecord.Options{})
		if err != nil {
			t.Fatalf("connect-time record: %v", err)
		}
		t.Cleanup(func() { rec.Close() })
		wopts.Records = rec
	}
	e.resolver, err = workload.New(att, reg, src, wopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.resolver.Close() })
	e.srv, err = wlapi.New(wlapi.Options{
		Resolver: e.resolver,
		Source:   src,
		Alive:    att.Alive,
		Poll:     50 * time.Millisecond,
		Audit:    zerolog.New(e.audit),

		MaxUnattestedPerUID: o.maxUnattested,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.serve(o.hold)
	return e
}

// serve listens (SO_PASSCRED on before anyone can connect, as
// proxy.Listen does) and serves until the test ends.
func (e *env) serve(hold bool) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: e.sock, Net: "unix"})
	if err != nil {
		e.t.Fatal(err)
	}
	raw, err := l.SyscallConn()
	if err != nil {
		e.t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = credread.SetPassCred(int(fd)) })
	if serr != nil {
		e.t.Fatal(serr)
	}
	if err := os.Chmod(e.sock, 0o666); err != nil {
		e.t.Fatal(err)
	}
	var ln net.Listener = l
	if hold {
		e.gate = make(chan struct{})
		ln = gatedListener{l, e.gate}
	}
	done := make(chan struct{})
	go func() { defer close(done); e.srv.Serve(ln) }()
	e.t.Cleanup(func() {
		if e.gate != nil {
			e.release()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		<-done
	})
}

// gatedListener accepts only once its gate is closed: clients connect
// into the backlog meanwhile, as when procmesh is slow to accept.
type gatedListener struct {
	*net.UnixListener
	gate chan struct{}
}

func (l gatedListener) Accept() (net.Conn, error) {
	<-l.gate
	return l.UnixListener.Accept()
}

func (e *env) release() {
	select {
	case <-e.gate:
	default:
		close(e.gate)
	}
}

// setEntries replaces the registration entries.
func (e *env) setEntries(entries ...registry.Entry) {
	e.t.Helper()
	for i := range entries {
		entries[i].Index = i
	}
	reg, err := registry.New(entries)
	if err != nil {
		e.t.Fatal(err)
	}
	e.resolver.SetRegistry(reg)
}

// reloadTrustBundles does to the bundles what a reload of cmd/procmesh
// does with a config whose trust_bundles name the upstream trust domain's
// CA and files: the set is built again from the CA's bundle and the files
// (loadBundles: tlsconf.LoadBundles, which merges a file for the node's
// own trust domain into the CA's bundle), then the live set is made to
// hold exactly it (tlsconf.SyncBundles, which a reload calls).
func (e *env) reloadTrustBundles(files ...tlsconf.BundleFile) {
	e.t.Helper()
	up := filepath.Join(e.dir, "upstream.pem")
	if err := os.WriteFile(up, e.upCA.BundlePEM(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	files = append([]tlsconf.BundleFile{{TrustDomain: upstreamTD, File: up}}, files...)
	fresh, err := tlsconf.LoadBundles(e.ca.Bundle(), files)
	if err != nil {
		e.t.Fatal(err)
	}
	tlsconf.SyncBundles(e.bundles, fresh)
}

// client is a copy of the test binary at its own path (readable by every
// uid): a distinct executable to attestation.
func (e *env) client(name string) string {
	e.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		e.t.Fatal(err)
	}
	d := filepath.Join(e.dir, "bin", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(d, "client")
	if err := os.WriteFile(p, append(b, name...), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func pathSel(p string) string { return "unix:path:" + p }

// command runs bin in mode as uid (-1: the test's own).
func (e *env) command(bin string, uid int, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append([]string{"GORACE=atexit_sleep_ms=0", "PROCMESH_TEST_CLIENT=" + mode, "PM_SOCK=" + e.sock,
		"SPIFFE_ENDPOINT_SOCKET=unix://" + e.sock}, env...)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	return cmd
}

// run runs bin in mode and returns its results. A binary written while
// another test forks can fail to exec with ETXTBSY (golang/go#22315):
// nothing ran then, so it is tried again.
func (e *env) run(bin string, uid int, mode string, env ...string) []result {
	e.t.Helper()
	for i := 0; ; i++ {
		cmd := e.command(bin, uid, mode, env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil {
			return parseResults(e.t, stdout.String())
		}
		if i == 20 || !errors.Is(err, syscall.ETXTBSY) {
			e.t.Fatalf("client %s %s: %v: %s", bin, mode, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start starts bin in mode and returns its results as they come.
func (e *env) start(bin string, uid int, mode string, env ...string) (*exec.Cmd, <-chan result) {
	e.t.Helper()
	cmd := e.command(bin, uid, mode, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	stderr := &logtest.Buffer{}
	cmd.Stderr = stderr
	for i := 0; ; i++ {
		err = cmd.Start()
		if err == nil || i == 20 || !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
		cmd = e.command(bin, uid, mode, env...)
		stdout, _ = cmd.StdoutPipe()
		cmd.Stderr = stderr
	}
	if err != nil {
		e.t.Fatal(err)
	}
	ch := make(chan result, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r result
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				ch <- r
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		wg.Wait()
		cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("client %s %s stderr: %s", bin, mode, stderr.String())
		}
	})
	return cmd, ch
}

// next waits for the next result of a started client.
func next(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("the client ended without a result")
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no result from the client in 30s")
	}
	return result{}
}

func parseResults(t *testing.T, stdout string) []result {
	t.Helper()
	var out []result
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if l == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("client printed %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// one is the single result of a client run.
func one(t *testing.T, rs []result) result {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("want 1 result, got %+v", rs)
	}
	return rs[0]
}

// waitAudit waits for an audit line with every one of subs.
func (e *env) waitAudit(subs ...string) string {
	e.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l := e.audit.Lines(subs...); len(l) > 0 {
			return l[0]
		}
	}
	e.t.Fatalf("no audit line with %q; audit:\n%s", subs, e.audit.String())
	return ""
}

// waitExe waits until process pid runs bin.
func waitExe(t *testing.T, pid int, bin string) {
	t.Helper()
	want, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if fi, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && os.SameFile(fi, want) {
			return
		}
	}
	t.Fatalf("process %d never ran %s", pid, bin)
}

func killPID(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}
