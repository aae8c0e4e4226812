//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoAttack runs what `make demo-attack` runs, with freshly built
// binaries: the demo asserts every outcome (the sidecar gives the
// application's identity to every caller, procmesh refuses every attack of
// THREATS I1, I11, I12, I15, I16, I17 and strips P9's header) and exits 1
// if one differs. HAProxy is part of the demonstration: without it the
// test fails (make test installs it: bench/install.sh haproxy).
func TestDemoAttack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the attack demo runs as root (it starts processes as uid 1000, makes cgroups): run the tests as root")
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatalf("HAProxy is the sidecar the demo compares with: ./bench/install.sh haproxy installs it (make test does): %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// -race: make test has compiled every package these binaries need
	// with -race already (for the packages' own tests), so this build
	// mostly links; a plain build would compile them all again.
	bin := t.TempDir()
	build := exec.Command("go", "build", "-race", "-o", bin+"/", "./cmd/procmesh", "./cmd/procmesh-demo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	demo := exec.CommandContext(ctx, filepath.Join(bin, "procmesh-demo"), "-procmesh", filepath.Join(bin, "procmesh"))
	demo.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("procmesh-demo: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "every outcome as expected") {
		t.Fatalf("procmesh-demo exited 0 without saying every outcome was as expected:\n%s", out)
	}
	var rows int
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| #") {
			rows++
		}
	}
	if rows != len(attempts) {
		t.Errorf("the closing table has %d rows, want %d:\n%s", rows, len(attempts), out)
	}
	t.Logf("%s", out)
}
