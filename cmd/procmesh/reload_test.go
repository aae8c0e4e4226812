package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/tlsconf"
)

// reloadEnv is a real node started from a file, in process, with a real
// mTLS upstream. The test process itself is the workload
// spiffe://example.org/tests.
type reloadEnv struct {
	t    *testing.T
	dir  string
	path string
	sock string
	up   *echo.Server
	rn   *running
	log  *logtest.Buffer
	// extra is appended to every config the env writes.
	extra string
}

func newReloadEnv(t *testing.T) *reloadEnv { return newReloadEnvWith(t, "") }

// newReloadEnvWith is newReloadEnv with extra appended to the config.
func newReloadEnvWith(t *testing.T, extra string) *reloadEnv {
	t.Helper()
	e := &reloadEnv{t: t, dir: t.TempDir(), log: &logtest.Buffer{}, extra: extra}
	e.path = filepath.Join(e.dir, "procmesh.yaml")
	e.sock = filepath.Join(e.dir, "egress.sock")

	// procmesh's CA exists before the upstream, which must trust it.
	e.write(e.config(true, true))
	cfg, err := config.Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := loadCA(cfg, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	upCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("upstream.test"), StateDir: filepath.Join(e.dir, "up")})
	if err != nil {
		t.Fatal(err)
	}
	upStore := tlsconf.NewStore(upCA, nil, tlsconf.StoreOptions{})
	t.Cleanup(func() { upStore.Close() })
	e.up = echo.New(echo.Options{SVID: upStore.SVIDSource(spiffeid.RequireFromString("spiffe://upstream.test/echo")), Bundles: x509bundle.NewSet(ca.Bundle())})
	if err := e.up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.up.Close() })
	if err := os.WriteFile(filepath.Join(e.dir, "upstream.pem"), upCA.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	e.write(e.config(true, true))
	if cfg, err = config.Load(e.path); err != nil {
		t.Fatal(err)
	}
	e.rn, err = start(e.path, cfg, zerolog.New(e.log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rn.stop(5 * time.Second) })
	return e
}

// config renders the file: the test binary is a workload if registered;
// it may use echo always and echo2 when wide.
func (e *reloadEnv) config(registered, wide bool) string {
	self, _ := os.Executable()
	upstream := "127.0.0.1:1"
	if e.up != nil {
		upstream = e.up.Addr()
	}
	workloads := "workloads: []\n"
	if registered {
		workloads = fmt.Sprintf("workloads:\n  - spiffe_id: spiffe://example.org/tests\n    selectors: [\"unix:path:%s\"]\n", self)
	}
	to := "[echo]"
	if wide {
		to = "[echo, echo2]"
	}
	return fmt.Sprintf(`trust_domain: example.org
listen: {socket: %s/egress.sock}
identity: {state_dir: %s/state}
reload: {watch: false}
trust_bundles:
  - {trust_domain: upstream.test, file: %s/upstream.pem}
%sroutes:
  - {name: echo, host: echo.test, upstream: %s, server_id: spiffe://upstream.test/echo}
  - {name: echo2, host: echo2.test, upstream: %s, server_id: spiffe://upstream.test/echo}
policy:
  default: deny
  rules:
    - {name: tests, from: ["spiffe://example.org/tests"], to: %s}
`, e.dir, e.dir, e.dir, workloads, upstream, upstream, to) + e.extra
}

// write replaces the config file atomically, as an editor or a ConfigMap
// update would.
func (e *reloadEnv) write(content string) {
	e.t.Helper()
	tmp := e.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.path); err != nil {
		e.t.Fatal(err)
	}
}

func (e *reloadEnv) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.sock)
		},
	}}
}

func (e *reloadEnv) get(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestReloadUnderLoad: 50 reloads while clients run; every request the new
// policy still allows succeeds; an invalid file keeps the last good config
// serving and is logged with FILE:LINE (THREATS F5).
func TestReloadUnderLoad(t *testing.T) {
	e := newReloadEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			for ctx.Err() == nil {
				status, err := e.get(c, "http://echo.test/load")
				if err != nil || status != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d err %v", status, err))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := 0; i < 50; i++ {
		e.write(e.config(true, i%2 == 0))
		if err := e.rn.reloader.reload("test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across reloads; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no request ran during the reloads")
	}
	// The last reload (i=49) was narrow: echo2 is now denied.
	c := e.client()
	if status, _ := e.get(c, "http://echo2.test/"); status != http.StatusForbidden {
		t.Fatalf("echo2 after a narrowing reload: %d, want 403", status)
	}

	e.write(e.config(true, true) + "bogus: [\n")
	if err := e.rn.reloader.reload("test"); err == nil {
		t.Fatal("an invalid file was accepted")
	}
	if status, err := e.get(c, "http://echo.test/still"); err != nil || status != http.StatusOK {
		t.Fatalf("after an invalid reload: %d %v, want the last good config serving", status, err)
	}
	if status, _ := e.get(c, "http://echo2.test/"); status != http.StatusForbidden {
		t.Fatalf("invalid reload applied part of itself: echo2 answered %d", status)
	}
	if !strings.Contains(e.log.String(), e.path+":") || !strings.Contains(e.log.String(), "config reload rejected") {
		t.Fatalf("rejection not logged with FILE:LINE:\n%s", e.log.String())
	}
}

// TestThreat_F5_InvalidReloadKeepsServing is the invalid-file half on its
// own, with a value error (not a syntax error) so FILE:LINE names the key.
func TestThreat_F5_InvalidReloadKeepsServing(t *testing.T) {
	e := newReloadEnv(t)
	e.write(strings.Replace(e.config(true, true), "default: deny", "default: maybe", 1))
	if err := e.rn.reloader.reload("test"); err == nil {
		t.Fatal("an invalid policy.default was accepted")
	}
	if !strings.Contains(e.log.String(), e.path+":") || !strings.Contains(e.log.String(), "policy.default") {
		t.Fatalf("rejection does not name FILE:LINE and the key:\n%s", e.log.String())
	}
	if status, err := e.get(e.client(), "http://echo.test/"); err != nil || status != http.StatusOK {
		t.Fatalf("after the invalid reload: %d %v", status, err)
	}
}

// TestRestartOnlyIgnoresLineMoves: adding a workload moves the lines of
// limits and upstream.quic; that is not a change that needs a restart.
func TestRestartOnlyIgnoresLineMoves(t *testing.T) {
	const base = "trust_domain: example.org\n%slimits: {max_connections: 5000}\nupstream:\n  quic: {idle_timeout: 20s}\n"
	parse := func(extra string) *config.Config {
		c, err := config.Parse("test.yaml", []byte(fmt.Sprintf(base, extra)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse("")
	moved := parse("workloads:\n  - {spiffe_id: spiffe://example.org/a, selectors: [\"unix:uid:1\"]}\n")
	if keys := restartOnly(old, moved); len(keys) != 0 {
		t.Fatalf("line moves reported as restart-only changes: %v", keys)
	}
	c2, err := config.Parse("test.yaml", []byte("trust_domain: example.org\nlimits: {max_connections: 6000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if keys := restartOnly(old, c2); !slices.Contains(keys, "limits") {
		t.Fatalf("a changed limit not reported: %v", keys)
	}
}
