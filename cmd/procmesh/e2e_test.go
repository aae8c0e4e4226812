package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procmesh/procmesh/internal/logtest"
)

// TestMakeRunEndToEnd runs scripts/dev-run.sh, what `make run` runs, with
// freshly built binaries, and calls the demo upstream with the real curl:
// the upstream must name curl's own SPIFFE ID. Then SIGINT must drain and
// exit 0 (THREATS F7, at the process level).
func TestMakeRunEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for the end-to-end test: apt-get install curl")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	// -race: the race build make test compiled serves, not a second
	// compile of every dependency.
	build := exec.Command("go", "build", "-race", "-o", bin+"/", "./cmd/procmesh", "./cmd/procmesh-echo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := filepath.Join(t.TempDir(), "run")
	httpAddr, tcpAddr := freeAddr(t), freeAddr(t)

	cmd := exec.Command("bash", filepath.Join(root, "scripts/dev-run.sh"))
	cmd.Env = append(os.Environ(), "PROCMESH_RUN_DIR="+run, "PROCMESH_BIN="+bin,
		"ECHO_HTTP_ADDR="+httpAddr, "ECHO_TCP_ADDR="+tcpAddr)
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	sock := filepath.Join(run, "egress.sock")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("dev-run.sh exited early (%v):\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("procmesh did not listen on %s within a minute:\n%s", sock, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "curl --unix-socket "+sock+" http://echo.test/hello") {
		t.Errorf("dev-run.sh did not print the curl line:\n%s", out.String())
	}

	got, err := exec.Command("curl", "-sS", "--unix-socket", sock, "http://echo.test/hello").CombinedOutput()
	if err != nil || !strings.Contains(string(got), `"spiffe_id":"spiffe://example.org/demo/curl"`) {
		t.Fatalf("curl through procmesh: %v\n%s\nprocmesh output:\n%s", err, got, out.String())
	}

	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Fatalf("dev-run.sh after SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("procmesh did not stop within 30s of SIGINT:\n%s", out.String())
	}
	for _, want := range []string{`"event":"request"`, `"spiffe_id":"spiffe://example.org/demo/curl"`, `"decision":"allow"`, "procmesh stopped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("procmesh output lacks %s:\n%s", want, out.String())
		}
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
