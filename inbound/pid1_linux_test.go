package inbound_test

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sys/unix"

	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

const envPID1 = "PROCMESH_INBOUND_PID1"

// TestThreat_N3_SocketOfPID1: a listening socket created by PID 1 (as
// systemd creates a socket-activated service's) is refused, even when PID
// 1's program is registered as the identity: procmesh cannot tell which
// program serves such a socket. The check runs in a child that is PID 1
// of a PID namespace of its own (with its own /proc), creates the
// service's socket, and runs the inbound server and a caller.
func TestThreat_N3_SocketOfPID1(t *testing.T) {
	cmd := exec.Command(bins.app, "-test.run=^TestPID1Child$", "-test.v")
	cmd.Env = append(os.Environ(), envPID1+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: TestPID1Child") {
		t.Fatalf("child did not pass:\n%s", out.String())
	}
}

// TestPID1Child is TestThreat_N3_SocketOfPID1's child; it does nothing
// unless run as that child.
func TestPID1Child(t *testing.T) {
	if os.Getenv(envPID1) == "" {
		t.Skip("runs only as TestThreat_N3_SocketOfPID1's child")
	}
	if os.Getpid() != 1 {
		t.Fatalf("child is PID %d, not 1", os.Getpid())
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	// PID 1's own program is the registered app.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bins.app = self
	e := newEnv(t, proxy.Limits{})
	sock := filepath.Join(t.TempDir(), "svc.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("served")) }))
	e.apply(e.listener("pid1", sock, "http1", policy.Rule{From: []spiffeid.ID{frontID}}))
	if resp, err := e.httpClient(e.svid(frontID), false).Get("https://" + e.addr("pid1") + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a socket created by PID 1 was served: %s", resp.Status)
	}
	e.auditLines(`"inbound":"pid1"`, "created by PID 1")
}
