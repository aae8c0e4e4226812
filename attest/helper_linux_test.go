//go:build linux

package attest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/procmesh/procmesh/internal/injecttest"
)

// The test binary re-executes itself as the peer processes: TestMain runs
// the helper named by envMode instead of the tests.
const (
	envMode   = "PROCMESH_ATTEST_HELPER" // connect, forkexec, hold, wait, script, setuid, cgroup, trace
	envSock   = "PROCMESH_ATTEST_SOCK"   // socket to connect to
	envExec   = "PROCMESH_ATTEST_EXEC"   // forkexec: file to exec after forking
	envScript = "PROCMESH_ATTEST_SCRIPT" // script: file to exec after connecting
	envCgroup = "PROCMESH_ATTEST_CGROUP" // cgroup: directory to make and move into before connecting
)

// bins are copies of the test binary in a world-readable directory: a and
// b differ in path and content (b has bytes appended), so in path and
// sha256 selectors.
var bins struct {
	dir        string
	a, b       string
	shaA, shaB string
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(envMode); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "procmesh-attest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	bins.dir, bins.a, bins.b = dir, filepath.Join(dir, "peer-a"), filepath.Join(dir, "peer-b")
	if err == nil {
		bins.shaA, err = copyExe(self, bins.a, nil)
	}
	if err == nil {
		bins.shaB, err = copyExe(self, bins.b, []byte("\nprocmesh attest peer b\n"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "attest test setup:", err)
		return 2
	}
	return m.Run()
}

// copyExe copies src to dst (mode 0755) with extra appended and returns the
// sha256 of dst.
func copyExe(src, dst string, extra []byte) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	b = append(b, extra...)
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// runHelper is the body of a peer process. Every mode blocks until its
// stdin (a pipe from the test) reaches EOF, so no peer outlives the test.
func runHelper(mode string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
		return 3
	}
	dial := func() (*net.UnixConn, error) {
		c, err := net.Dial("unix", os.Getenv(envSock))
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}
	switch mode {
	case "connect":
		if _, err := dial(); err != nil {
			return fail(err)
		}
	case "wait":
		fmt.Printf("ready %d\n", os.Getpid())
	case "cgroup":
		// What a user does in the cgroup subtree delegated to it: make
		// cgroups with the names it likes and move itself into one.
		dir := os.Getenv(envCgroup)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(dir+"/cgroup.procs", []byte("0\n"), 0); err != nil {
			return fail(err)
		}
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return fail(err)
		}
		for line := range strings.Lines(string(b)) {
			if v2, ok := strings.CutPrefix(line, "0::"); ok {
				fmt.Printf("moved %s", v2)
			}
		}
		if _, err := dial(); err != nil {
			return fail(err)
		}
	case "hold":
		// Holds the socket inherited as fd 3 and proves it by writing on it.
		if _, err := fmt.Fprintf(os.NewFile(3, "socket"), "held %d\n", os.Getpid()); err != nil {
			return fail(err)
		}
	case "forkexec":
		// Go cannot fork without exec: the child that keeps the socket is
		// this same image started again with the socket as fd 3.
		c, err := dial()
		if err != nil {
			return fail(err)
		}
		f, err := c.File()
		if err != nil {
			return fail(err)
		}
		self, _ := os.Executable()
		hold := exec.Command(self)
		hold.Env = helperEnv("hold")
		hold.Stdin, hold.Stderr, hold.ExtraFiles = os.Stdin, os.Stderr, []*os.File{f}
		if err := hold.Start(); err != nil {
			return fail(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil { // the test says: exec now
			return fail(err)
		}
		err = syscall.Exec(os.Getenv(envExec), []string{os.Getenv(envExec)}, helperEnv("wait"))
		return fail(err)
	case "script":
		// Connect, keep the socket across exec, and become the script.
		c, err := dial()
		if err != nil {
			return fail(err)
		}
		f, err := c.File()
		if err == nil {
			_, err = syscall.Dup(int(f.Fd())) // without close-on-exec
		}
		if err != nil {
			return fail(err)
		}
		script := os.Getenv(envScript)
		return fail(syscall.Exec(script, []string{script}, os.Environ()))
	case "trace":
		// Start envExec (argument: the socket) traced by this process, as
		// an attacker's launcher does with PTRACE_TRACEME, and keep it
		// traced until stdin reaches EOF.
		runtime.LockOSThread()
		victim := exec.Command(os.Getenv(envExec))
		victim.Stdin, victim.Stdout, victim.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := injecttest.TraceMe(victim); err != nil {
			return fail(err)
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = victim.Process.Kill()
		_ = victim.Wait()
		return 0
	case "setuid":
		// Connect as root, then drop to uid 1000 when the test says so.
		c, err := dial()
		if err != nil {
			return fail(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			return fail(err)
		}
		if err := syscall.Setuid(1000); err != nil {
			return fail(err)
		}
		fmt.Printf("ready %d\n", os.Getpid())
	default:
		return fail(errors.New("unknown mode"))
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
