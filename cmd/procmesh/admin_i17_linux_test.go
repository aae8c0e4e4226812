//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procmesh/procmesh/internal/injecttest"
)

// TestThreat_I17_TracedRefusalCounted: a process traced by another
// (PTRACE_TRACEME, as an attacker's launcher does) that makes a request is
// refused, and the admin listener counts the refusal as reason="traced" and
// shows it on the status page with its PID.
func TestThreat_I17_TracedRefusalCounted(t *testing.T) {
	addr := freeAddr(t)
	e := newReloadEnvWith(t, fmt.Sprintf("admin: {listen: %q}\n", addr))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e.dir, "traced-client")
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1)
	pid := make(chan int, 1)
	go func() {
		// The tracer is this thread: it starts the child and lets it run
		// through every signal stop until it exits.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		// An *os.File as stdout: the child writes it itself, with no
		// copying goroutine that Wait (which a tracer cannot use) would
		// have to end.
		r, w, err := os.Pipe()
		if err != nil {
			out <- err.Error()
			pid <- 0
			return
		}
		defer r.Close()
		cmd := exec.Command(other, "-test.run=^TestAdminHelperGet$")
		cmd.Env = append(os.Environ(), "PROCMESH_HELPER_SOCK="+e.sock)
		cmd.Stdout, cmd.Stderr = w, w
		err = injecttest.TraceMe(cmd)
		w.Close()
		if err != nil {
			out <- err.Error()
			pid <- 0
			return
		}
		pid <- cmd.Process.Pid
		for {
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(cmd.Process.Pid, &ws, 0, nil); err != nil {
				break
			}
			if ws.Exited() || ws.Signaled() {
				break
			}
			if ws.Stopped() {
				syscall.PtraceCont(cmd.Process.Pid, int(ws.StopSignal()))
			}
		}
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	p := <-pid
	var got string
	select {
	case got = <-out:
	case <-time.After(60 * time.Second):
		t.Fatal("the traced client did not finish")
	}
	if p == 0 || !strings.Contains(got, "helper status 403") {
		t.Fatalf("traced client: %s", got)
	}
	_, body := adminGet(t, addr, "/metrics")
	if v := metricValue(t, body, `procmesh_attestation_refusals_total{reason="traced"}`); v != 1 {
		t.Errorf("traced refusals = %v; want 1", v)
	}
	_, js := adminGet(t, addr, "/status.json")
	if !strings.Contains(js, fmt.Sprintf(`"pid": %d`, p)) || !strings.Contains(js, `"kind": "traced"`) {
		t.Errorf("status lacks the traced refusal of %d:\n%s", p, js)
	}
}
