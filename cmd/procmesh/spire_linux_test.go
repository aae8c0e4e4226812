//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/admin"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/internal/spiretest"
	"github.com/procmesh/procmesh/tlsconf"
)

// TestExplainSPIRE: with identity.provider spire, explain shows what SPIRE
// answered for the process (asked by PID, as the proxy asks), and the
// policy for that ID; a process SPIRE has no entry for is shown refused.
func TestExplainSPIRE(t *testing.T) {
	sp := spiretest.Start(t, spiretest.Options{})
	sp.CreateEntry("spiffe://example.org/tests", "unix:uid:1000", "unix:path:/usr/bin/sleep")
	sp.WaitEntry("spiffe://example.org/tests", "unix:uid:1000", "unix:path:/usr/bin/sleep")
	dir := t.TempDir()
	path := filepath.Join(dir, "procmesh.yaml")
	cfg := fmt.Sprintf(`trust_domain: example.org
listen: {socket: %s/egress.sock}
identity:
  provider: spire
  spire: {admin_socket: %s}
routes:
  - {name: echo, host: echo.test, upstream: "127.0.0.1:1", server_id: spiffe://example.org/echo}
policy:
  default: deny
  rules:
    - {name: tests-to-echo, from: ["spiffe://example.org/tests"], to: [echo]}
`, dir, sp.AdminSocket)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		uid  uint32
		want []string
	}{
		{1000, []string{"SPIRE agent at " + sp.AdminSocket, "spire answer", "spiffe://example.org/tests", "the one procmesh uses", "tests-to-echo", "allow"}},
		{1001, []string{"spire answer  no SVID", "none in SPIRE", "unix:uid:1001"}},
	} {
		cmd := exec.Command("/usr/bin/sleep", "1000")
		cmd.SysProcAttr = credential(c.uid)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		code, out, errOut := run("explain", "-config", path, "-pid", fmt.Sprint(cmd.Process.Pid))
		if code != 0 {
			t.Fatalf("explain exited %d: %s", code, errOut)
		}
		for _, want := range c.want {
			if !strings.Contains(squeeze(out), squeeze(want)) {
				t.Errorf("uid %d: explain output lacks %q:\n%s", c.uid, want, out)
			}
		}
	}
}

// With the SPIRE provider there is no built-in CA: ca bundle says where
// the bundle is instead of creating a CA nobody uses.
func TestCABundleSPIRE(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "procmesh.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf("trust_domain: example.org\nidentity: {provider: spire, state_dir: %s/state}\n", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("ca", "bundle", "-config", path)
	if code != 1 || out != "" || !strings.Contains(errOut, "spire-server bundle show") {
		t.Fatalf("ca bundle with provider spire: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Fatal("ca bundle created a built-in CA with provider spire")
	}
}

func credential(uid uint32) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
}

// TestRunWithSPIRE starts procmesh from a config with identity.provider
// spire against a real SPIRE agent: curl, registered in SPIRE, reaches an
// mTLS upstream that trusts only SPIRE's bundle, and is told apart by the
// SPIFFE ID SPIRE gave it; a reload keeps it working. (The test binary is
// procmesh here, the delegate: a client of its own would match both its
// entry and the delegate's.)
func TestRunWithSPIRE(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err == nil {
		curl, err = filepath.EvalSymlinks(curl)
	}
	if err != nil {
		t.Fatalf("curl is needed: apt-get install curl (%v)", err)
	}
	sp := spiretest.Start(t, spiretest.Options{})
	sp.CreateEntry("spiffe://example.org/tests", "unix:path:"+curl)
	sp.WaitEntry("spiffe://example.org/tests", "unix:path:"+curl)
	dir := t.TempDir()
	spireBundle, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), sp.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	upCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("upstream.test"), StateDir: filepath.Join(dir, "up")})
	if err != nil {
		t.Fatal(err)
	}
	upStore := tlsconf.NewStore(upCA, nil, tlsconf.StoreOptions{})
	t.Cleanup(func() { upStore.Close() })
	up := echo.New(echo.Options{SVID: upStore.SVIDSource(spiffeid.RequireFromString("spiffe://upstream.test/echo")), Bundles: x509bundle.NewSet(spireBundle)})
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	if err := os.WriteFile(filepath.Join(dir, "upstream.pem"), upCA.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "procmesh.yaml")
	adminAddr := freeAddr(t)
	cfgText := fmt.Sprintf(`trust_domain: example.org
listen: {socket: %s/egress.sock}
identity:
  provider: spire
  spire: {admin_socket: %s}
reload: {watch: false}
trust_bundles:
  - {trust_domain: upstream.test, file: %s/upstream.pem}
routes:
  - {name: echo, host: echo.test, upstream: "%s", server_id: spiffe://upstream.test/echo}
policy:
  default: deny
  rules:
    - {name: tests, from: ["spiffe://example.org/tests"], to: [echo]}
admin: {listen: "%s"}
`, dir, sp.AdminSocket, dir, up.Addr(), adminAddr)
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := &logtest.Buffer{}
	rn, err := start(path, cfg, zerolog.New(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rn.stop(5 * time.Second) })
	get := func() string {
		t.Helper()
		out, err := exec.Command(curl, "-sS", "-f", "--unix-socket", filepath.Join(dir, "egress.sock"), "http://echo.test/whoami").CombinedOutput()
		if err != nil {
			t.Fatalf("curl through procmesh: %v: %s\n%s", err, out, log.String())
		}
		return string(out)
	}
	if body := get(); !strings.Contains(body, `"spiffe_id":"spiffe://example.org/tests"`) {
		t.Fatalf("upstream reply %s", body)
	}
	if err := rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	get()
	if n := len(up.Records()); n != 2 {
		t.Fatalf("the upstream saw %d requests, want 2", n)
	}
	checkAdminSPIRE(t, adminAddr, curl)
}

// checkAdminSPIRE: with the SPIRE provider the admin listener reports the
// agent's state and is ready; once curl exited, its SVID is gone (THREATS
// I14) and the status page lists curl nowhere, not as a process without an
// identity.
func checkAdminSPIRE(t *testing.T, addr, curl string) {
	t.Helper()
	// curl's stream ends when procmesh sees its pidfd fire, a moment
	// after curl exits: wait for that, within a bound.
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body = adminGet(t, addr, "/metrics")
		if metricValue(t, body, "procmesh_spire_streams") == 0 || time.Now().After(deadline) {
			break
		}
	}
	if metricValue(t, body, "procmesh_spire_agent_up") != 1 || metricValue(t, body, "procmesh_spire_bundles_received") != 1 ||
		metricValue(t, body, "procmesh_svids") != 0 || metricValue(t, body, "procmesh_spire_streams") != 0 {
		t.Errorf("SPIRE metrics:\n%s", body)
	}
	if status, body := adminGet(t, addr, "/readyz"); status != 200 || !strings.Contains(body, "ok identity: the SPIRE agent answers") {
		t.Errorf("/readyz: %d %s", status, body)
	}
	_, js := adminGet(t, addr, "/status.json")
	var st admin.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Unmatched {
		if p.Exe == curl {
			t.Errorf("curl, which exited, is listed as a process without an identity: %s", js)
		}
	}
	for _, id := range st.Identities {
		if id.SVIDExpiry != nil || len(id.Processes) > 0 {
			t.Errorf("an identity outlives its process: %s", js)
		}
	}
}
