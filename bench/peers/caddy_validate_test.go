package peers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procmesh/procmesh/bench/pki"
)

// caddyBinary returns the Caddy the suite runs: $CADDY_BIN when set,
// otherwise caddy on PATH (Debian's, which `make test` and bench/install.sh
// install when missing). It never skips: without Caddy the test fails.
func caddyBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("caddy")
	if err != nil {
		t.Fatalf("Caddy is needed to validate the generated Caddyfile and is not on PATH: run `make test` (it installs Debian's caddy when missing) or `apt-get install caddy` (%v)", err)
	}
	return bin
}

// caddyValidate runs `caddy validate --adapter caddyfile` on cfg (the check
// the suite runs before it starts Caddy; it provisions every module, so the
// certificate files are read) and returns Caddy's output and whether it
// accepted cfg.
func caddyValidate(t *testing.T, bin, dir, cfg string) (string, bool) {
	t.Helper()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "validate", "--adapter", "caddyfile", "--config", file)
	cmd.Env = append(os.Environ(), CaddyEnv(dir)...)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("running %s: %v", bin, err)
	}
	return string(out), err == nil
}

// TestCaddyValidate has Caddy itself check the Caddyfile the suite
// generates, with real certificate files from the suite's PKI, and checks
// that the validation can fail: a misspelt subdirective, a client key and a
// CA bundle that do not exist are refused.
func TestCaddyValidate(t *testing.T) {
	bin := caddyBinary(t)
	dir := t.TempDir()
	p, err := pki.New(filepath.Join(dir, "state"), filepath.Join(dir, "pki"), -1)
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.Client("caddy")
	if err != nil {
		t.Fatal(err)
	}
	in := testInputs()
	in.Dir = dir
	in.Client = files
	cfg, _ := Caddy(in)
	if out, ok := caddyValidate(t, bin, dir, cfg); !ok {
		t.Fatalf("caddy validate refused the generated Caddyfile:\n%s\n--- Caddyfile:\n%s", out, cfg)
	}
	for _, c := range []struct{ name, broken, why string }{
		{"misspelt subdirective", strings.Replace(cfg, "tls_client_auth", "tls_client_authx", 1), "unrecognized subdirective tls_client_authx"},
		{"missing key file", strings.Replace(cfg, files.Key, files.Key+".missing", 1), "loading client certificate key pair"},
		{"missing CA file", strings.Replace(cfg, "tls_trusted_ca_certs "+files.Bundle, "tls_trusted_ca_certs "+files.Bundle+".missing", 1), ".missing"},
	} {
		if c.broken == cfg {
			t.Fatalf("%s: the generated Caddyfile no longer has what this case breaks", c.name)
		}
		out, ok := caddyValidate(t, bin, dir, c.broken)
		if ok || !strings.Contains(out, c.why) {
			t.Errorf("%s: caddy validate accepted it or refused it for another reason (want %q):\n%s", c.name, c.why, out)
		}
	}
}

// TestCaddyConfigStructure checks each setting the suite relies on is in
// the generated Caddyfile.
func TestCaddyConfigStructure(t *testing.T) {
	in := testInputs()
	cfg, s := Caddy(in)
	mustContain(t, "Caddyfile", cfg,
		"admin off", "auto_https off",
		"bind unix//run/bench/cad-h1.sock",
		"bind unix//run/bench/cad-h2.sock",
		"reverse_proxy 127.0.0.1:1001 {",
		"reverse_proxy 127.0.0.1:1002 {",
		"tls_client_auth /c/haproxy.pem /c/haproxy.key",
		"tls_trusted_ca_certs /c/ca.pem",
		"tls_server_name upstream.bench.test",
		"versions 1.1", "versions 2",
		"keepalive_idle_conns_per_host 10500",
	)
	sites := cfg[strings.Index(cfg, "http://"):]
	if strings.Contains(sites, "\tlog ") || strings.Contains(sites, "\tlog\n") {
		t.Error("a site has an access log; the suite runs proxies without them")
	}
	if s.HTTP == "" || s.H2 == "" || s.L4 != "" || s.H3 != "" {
		t.Errorf("Caddy sockets = %+v, want HTTP and H2, no L4 (core Caddy has no L4 proxy) and no H3", s)
	}
}

func TestCaddyVersion(t *testing.T) {
	for out, want := range map[string]string{
		"2.6.2\n": "2.6.2",
		"v2.7.6 h1:w0NymbG2m9PcvKWsrXO6EEkY9Ru4FJK8uQbYcev1p3A=": "2.7.6",
		"something else entirely":                                "something",
	} {
		if got := CaddyVersion(out); got != want {
			t.Errorf("CaddyVersion(%q) = %q, want %q", out, got, want)
		}
	}
}
