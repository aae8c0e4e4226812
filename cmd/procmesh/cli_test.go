package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a minimal valid config whose state lives in a temp
// dir; extra is appended verbatim.
func writeConfig(t *testing.T, extra string) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	cfg := configHead(dir) + fmt.Sprintf(`routes:
  - name: echo
    host: echo.test
    upstream: 127.0.0.1:1
    server_id: spiffe://example.org/echo
policy:
  default: deny
  rules:
    - name: tests-to-echo
      from: ["spiffe://example.org/tests"]
      to: [echo]
%s`, extra)
	path = filepath.Join(dir, "procmesh.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

// configHead is the start every test config shares: state and socket in
// dir, and the test binary registered as spiffe://example.org/tests.
func configHead(dir string) string {
	self, _ := os.Executable()
	return fmt.Sprintf(`trust_domain: example.org
listen:
  socket: %s/egress.sock
identity:
  state_dir: %s/state
workloads:
  - spiffe_id: spiffe://example.org/tests
    selectors: ["unix:path:%s"]
`, dir, dir, self)
}

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = runMain(args, &o, &e)
	return code, o.String(), e.String()
}

func TestCheck(t *testing.T) {
	good, _ := writeConfig(t, "")
	if code, out, errOut := run("check", "-config", good); code != 0 || !strings.Contains(out, ": ok") {
		t.Fatalf("check of a good file: exit %d\n%s%s", code, out, errOut)
	}
	bad, _ := writeConfig(t, "bogus_key: 1\n")
	code, _, errOut := run("check", "-config", bad)
	if code != 1 {
		t.Fatalf("check of a bad file exited %d, want 1", code)
	}
	if want := bad + `:20: unknown key "bogus_key" at top level`; !strings.Contains(errOut, want) {
		t.Fatalf("check error %q lacks %q", errOut, want)
	}
}

func TestCABundle(t *testing.T) {
	path, dir := writeConfig(t, "")
	code, out, errOut := run("ca", "bundle", "-config", path)
	if code != 0 {
		t.Fatalf("ca bundle exited %d: %s", code, errOut)
	}
	block, _ := pem.Decode([]byte(out))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("ca bundle printed %q, want a PEM certificate", out)
	}
	fi, err := os.Stat(filepath.Join(dir, "state", "ca.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, %v; want 0600", fi.Mode(), err)
	}
	// A second call prints the same bundle: the CA is reused, not remade.
	if _, again, _ := run("ca", "bundle", "-config", path); again != out {
		t.Fatal("second ca bundle printed another CA")
	}
	if strings.Contains(out, "PRIVATE KEY") {
		t.Fatal("ca bundle printed a private key")
	}
}

// TestExplain explains the test process itself, which the config names.
func TestExplain(t *testing.T) {
	path, _ := writeConfig(t, "")
	code, out, errOut := run("explain", "-config", path, "-pid", fmt.Sprint(os.Getpid()))
	if code != 0 {
		t.Fatalf("explain exited %d: %s", code, errOut)
	}
	self, _ := os.Executable()
	for _, want := range []string{"unix:path:" + self, "spiffe://example.org/tests", "echo", "allow", "tests-to-echo"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := run("explain", "-config", path, "-pid", "0"); code != 2 {
		t.Errorf("explain -pid 0 exited %d, want 2", code)
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := run("version"); code != 0 || !strings.HasPrefix(out, "procmesh ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := run("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
}

// I16: check warns, without failing, about an entry that names an
// executable by path without pinning its content; a pinned entry gets no
// warning.
func TestThreat_I16_CheckWarnsPathOnly(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	path, _ := writeConfig(t, "")
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("workloads:\n"), []byte("workloads:\n"+
		"  - spiffe_id: spiffe://example.org/pinned\n    selectors: [\"unix:uid:1000\", \"unix:path:/usr/bin/pinned\", \"unix:sha256:"+sha+"\"]\n"+
		"  - spiffe_id: spiffe://example.org/inventory\n    selectors: [\"unix:uid:1000\", \"unix:path:/usr/local/bin/inventory\"]\n"), 1)
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("check", "-config", path)
	if code != 0 || !strings.Contains(out, ": ok") {
		t.Fatalf("check exited %d\n%s%s", code, out, errOut)
	}
	want := path + ":9: warning: workloads[1] (spiffe://example.org/inventory) rests on unix:path:/usr/local/bin/inventory without unix:sha256"
	if !strings.Contains(errOut, want) {
		t.Errorf("check output %q lacks %q", errOut, want)
	}
	if strings.Contains(errOut, "example.org/pinned") {
		t.Errorf("check warns about the sha256-pinned entry: %q", errOut)
	}
}
