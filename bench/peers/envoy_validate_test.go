package peers

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procmesh/procmesh/bench/pki"
)

// envoyBinary returns the Envoy the suite runs: $ENVOY_BIN when set (the
// Makefile sets it), otherwise what bench/install-envoy.sh installs (or has
// installed) and prints. It never skips: without Envoy the test fails and
// says what the installer printed.
func envoyBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		return bin
	}
	script, err := filepath.Abs(filepath.Join("..", "install-envoy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("Envoy is needed to validate the generated configuration, and %s failed (%v):\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// envoyValidate runs `envoy --mode validate` on cfg with the flags the suite
// starts Envoy with, and returns Envoy's output and whether it accepted cfg.
func envoyValidate(t *testing.T, bin, cfg string) (string, bool) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--mode", "validate", "-c", file, "--concurrency", "2",
		"--log-level", "warn", "--disable-hot-restart").CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("running %s: %v", bin, err)
	}
	return string(out), err == nil
}

// envoyInputs are the generator's inputs with real certificate files from
// the suite's PKI, which Envoy reads while validating.
func envoyInputs(t *testing.T) Inputs {
	t.Helper()
	dir := t.TempDir()
	p, err := pki.New(filepath.Join(dir, "state"), filepath.Join(dir, "pki"), -1)
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.Client("envoy")
	if err != nil {
		t.Fatal(err)
	}
	in := testInputs()
	in.Dir = dir
	in.Client = files
	return in
}

// TestEnvoyValidate has Envoy itself check the bootstrap the suite
// generates (`envoy --mode validate`, the check the suite runs before it
// starts Envoy), and checks that the validation can fail: the same bootstrap
// with a misspelt field and with a curve BoringSSL does not know is refused.
func TestEnvoyValidate(t *testing.T) {
	bin := envoyBinary(t)
	in := envoyInputs(t)
	cfg, _ := Envoy(in)
	if out, ok := envoyValidate(t, bin, cfg); !ok {
		t.Fatalf("envoy --mode validate refused the generated configuration:\n%s\n--- envoy.yaml:\n%s", out, cfg)
	}
	for _, c := range []struct{ name, broken, why string }{
		{"misspelt field", strings.Replace(cfg, "ecdh_curves:", "ecdh_curve:", 1), "ecdh_curve"},
		{"unknown curve", strings.Replace(cfg, "ecdh_curves: [X25519]", "ecdh_curves: [X25519x]", 1), "ECDH curves X25519x"},
	} {
		if c.broken == cfg {
			t.Fatalf("%s: the generated configuration no longer has what this case breaks", c.name)
		}
		out, ok := envoyValidate(t, bin, c.broken)
		if ok || !strings.Contains(out, c.why) {
			t.Errorf("%s: envoy --mode validate accepted it or refused it for another reason (want %q):\n%s", c.name, c.why, out)
		}
	}
}
