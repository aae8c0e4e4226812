package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

var (
	nodeTD     = spiffeid.RequireTrustDomainFromString("example.org")
	upstreamTD = spiffeid.RequireTrustDomainFromString("upstream.test")
	echoID     = spiffeid.RequireFromString("spiffe://upstream.test/echo")
)

// env is one procmesh data plane in a test: a built-in CA, a real mTLS
// upstream with its own CA, the real attestor and resolver, and a Server
// listening on a Unix socket in a directory every uid can reach.
type env struct {
	t          testing.TB
	dir        string
	sock       string
	rawSock    string
	ca         *tlsconf.CA
	upCA       *tlsconf.CA
	store      *tlsconf.Store
	resolver   *workload.Resolver
	srv        *proxy.Server
	echo       *echo.Server
	raw        *echo.Server
	audit      *logtest.Buffer
	done       chan struct{}
	hold       bool
	preconnect int           // the echo route's Preconnect (envOptions.preconnect)
	held       chan struct{} // closed by release
}

type envOptions struct {
	entries      []registry.Entry
	rules        []policy.Rule
	defaultAllow bool
	// echoID is the SPIFFE ID the upstream presents; default echoID.
	echoID spiffeid.ID
	// routeServerID is what the routes demand of the upstream; default echoID.
	routeServerID spiffeid.ID
	// records turns on the kernel's connect-time record (THREATS I11).
	records bool
	// attestWriters is attest.foreign_writer: attest (THREATS I12).
	attestWriters bool
	// hold creates the sockets but serves them only at env.release: clients
	// connect into the listen backlog, as when procmesh is slow to accept.
	hold bool
	// preconnect is the echo route's Preconnect.
	preconnect int
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.echoID.IsZero() {
		o.echoID = echoID
	}
	if o.routeServerID.IsZero() {
		o.routeServerID = echoID
	}
	e := newEnvDir(t, "procmesh-proxy-test-")
	dir := e.dir

	e.ca = mustCA(t, nodeTD, filepath.Join(dir, "state"))
	e.upCA = mustCA(t, upstreamTD, filepath.Join(dir, "upstate"))
	nodeBundles := x509bundle.NewSet(e.ca.Bundle())
	upStore := tlsconf.NewStore(e.upCA, x509bundle.NewSet(e.upCA.Bundle()), tlsconf.StoreOptions{})
	t.Cleanup(func() { upStore.Close() })
	e.echo = startEcho(t, "http", upStore.SVIDSource(o.echoID), nodeBundles)
	e.raw = startEcho(t, "tcp", upStore.SVIDSource(o.echoID), nodeBundles)

	bundles, err := tlsconf.LoadBundles(e.ca.Bundle(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bundles.Add(e.upCA.Bundle())
	e.store = tlsconf.NewStore(e.ca, bundles, tlsconf.StoreOptions{})
	t.Cleanup(func() { e.store.Close() })

	reg, err := registry.New(o.entries)
	if err != nil {
		t.Fatal(err)
	}
	var wopts workload.Options
	if o.records {
		rec, err := connrecord.Open(connrecord.Options{})
		if err != nil {
			t.Fatalf("connect-time record: %v", err)
		}
		t.Cleanup(func() { rec.Close() })
		wopts.Records = rec
	}
	e.resolver, err = workload.New(attest.New(attest.Options{}), reg, e.store, wopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.resolver.Close() })

	e.preconnect = o.preconnect
	st := e.state(o.rules, o.defaultAllow, o.routeServerID)
	e.srv, err = proxy.New(e.resolver, e.store, st, proxy.Options{
		Audit:                zerolog.New(e.audit),
		AttestForeignWriters: o.attestWriters,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.hold = o.hold
	e.serve(e.srv, e.sock, e.rawSock)
	return e
}

// newEnvDir is an env with only its directory (every uid can reach it),
// socket paths and audit buffer: the start both kinds of env share.
func newEnvDir(t testing.TB, prefix string) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, sock: filepath.Join(dir, "egress.sock"), rawSock: filepath.Join(dir, "raw.sock"), audit: &logtest.Buffer{}, done: make(chan struct{})}
}

// release starts serving the sockets of an env made with hold.
func (e *env) release() { close(e.held) }

// serve listens on sock (the forward proxy) and, when rawSock is set, on
// rawSock (route echo-raw's raw socket), serves srv on them, and shuts it
// down when the test ends.
func (e *env) serve(srv *proxy.Server, sock, rawSock string) {
	e.t.Helper()
	var wg sync.WaitGroup
	var sockets []*proxy.Socket
	listen := func(path string) *proxy.Socket {
		s, err := proxy.Listen(proxy.ListenOptions{Path: path, Mode: 0o666, GID: -1})
		if err != nil {
			e.t.Fatal(err)
		}
		sockets = append(sockets, s)
		return s
	}
	main := listen(sock)
	held := make(chan struct{})
	if e.hold {
		e.held = held
	} else {
		close(held)
	}
	wg.Add(1)
	go func() { defer wg.Done(); <-held; srv.Serve(main) }()
	if rawSock != "" {
		raw := listen(rawSock)
		wg.Add(1)
		go func() { defer wg.Done(); <-held; srv.ServeRaw(raw, "echo-raw") }()
	}
	e.t.Cleanup(func() {
		select {
		case <-held:
		default:
			close(held)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		wg.Wait()
		for _, s := range sockets {
			s.Close()
		}
	})
}

// setEntries replaces the registration entries (the client binaries live
// in the env's directory, so entries naming them come after newEnv).
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

// state builds the routes every test uses: echo (HTTP/1.1) and echo-raw
// (TCP), both to the test's upstreams.
func (e *env) state(rules []policy.Rule, defaultAllow bool, serverID spiffeid.ID) *proxy.State {
	e.t.Helper()
	pol, err := policy.New(defaultAllow, rules)
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := proxy.NewState([]proxy.Route{
		{Name: "echo", Host: "echo.test", Upstream: e.echo.Addr(), ServerID: serverID, Protocol: proxy.ProtocolHTTP1, Preconnect: e.preconnect},
		{Name: "echo-raw", Host: "echo-raw.test", Upstream: e.raw.Addr(), ServerID: serverID, Protocol: proxy.ProtocolTCP},
	}, pol)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func mustCA(t testing.TB, td spiffeid.TrustDomain, dir string) *tlsconf.CA {
	t.Helper()
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: td, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func startEcho(t testing.TB, mode string, svid x509svid.Source, bundles x509bundle.Source) *echo.Server {
	t.Helper()
	s := echo.New(echo.Options{Mode: echo.Mode(mode), SVID: svid, Bundles: bundles})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// client is a copy of the test binary at its own path: a distinct
// executable as far as attestation is concerned. salt changes its sha256.
func (e *env) client(name string, salt string) string {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		e.t.Fatal(err)
	}
	d := filepath.Join(e.dir, "bin", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(d, "client")
	if err := os.WriteFile(p, append(b, salt...), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// run executes a client binary as uid (or as the test's own uid when uid
// is -1) and returns its parsed results. A binary written while another
// test forks can fail to exec with ETXTBSY until that fork has exec'd
// (golang/go#22315); nothing ran then, so it is tried again.
func (e *env) run(bin string, uid int, mode string, env ...string) ([]clientResult, error) {
	for i := 0; ; i++ {
		cmd := e.command(bin, uid, mode, env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil {
			return parseResults(e.t, stdout.String()), nil
		}
		if i == 20 || !errors.Is(err, syscall.ETXTBSY) {
			return nil, errors.New(err.Error() + ": " + stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) command(bin string, uid int, mode string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin, "-test.run=^$")
	// A race-enabled child would otherwise sleep 1s at exit.
	cmd.Env = append([]string{"GORACE=atexit_sleep_ms=0", "PROCMESH_TEST_CLIENT=" + mode, "PM_SOCK=" + e.sock}, env...)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	return cmd
}

// path selector of a client binary.
func pathSel(p string) string { return "unix:path:" + p }
