package browser

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the procmesh checkout this module lives in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// built is the directory of the binaries buildProcmesh built, once.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// TestMain removes what buildProcmesh built.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildProcmesh builds procmesh and procmesh-echo from the checkout, once
// for all the tests.
func buildProcmesh(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "procmesh-bin"); built.err != nil {
			return
		}
		// -race: the race build make test compiled serves, not a second
		// compile of every dependency.
		build := exec.Command("go", "build", "-race", "-o", built.dir+"/", "./cmd/procmesh", "./cmd/procmesh-echo")
		build.Dir = repoRoot(t)
		if out, err := build.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
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

// syncBuffer is an io.Writer safe for a process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// node is procmesh running from its binary with a demo mTLS upstream
// (procmesh-echo) and the admin listener on loopback. The test binary is
// the workload spiffe://example.org/demo/client.
type node struct {
	dir, sock, admin string
	log              *syncBuffer
}

// startNode starts procmesh-echo and procmesh as `make run` does.
func startNode(t *testing.T) *node {
	t.Helper()
	bin := buildProcmesh(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	n := &node{dir: dir, sock: filepath.Join(dir, "egress.sock"), admin: freeAddr(t), log: &syncBuffer{}}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	cfg := fmt.Sprintf(`trust_domain: example.org
listen: {socket: %[1]s/egress.sock}
identity: {state_dir: %[1]s/state}
reload: {watch: false}
trust_bundles:
  - {trust_domain: upstream.test, file: %[1]s/upstream-bundle.pem}
workloads:
  - spiffe_id: spiffe://example.org/demo/client
    selectors: ["unix:path:%[2]s"]
routes:
  - {name: echo, host: echo.test, upstream: "%[3]s", server_id: spiffe://upstream.test/echo}
policy:
  default: deny
  rules:
    - {name: client-echo, from: ["spiffe://example.org/demo/client"], to: [echo]}
admin: {listen: "%[4]s"}
`, dir, self, httpAddr, n.admin)
	path := filepath.Join(dir, "procmesh.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle, err := exec.Command(filepath.Join(bin, "procmesh"), "ca", "bundle", "-config", path).Output()
	if err != nil {
		t.Fatalf("procmesh ca bundle: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "procmesh-bundle.pem"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	echo := exec.Command(filepath.Join(bin, "procmesh-echo"), "-state", filepath.Join(dir, "echo"), "-trust-domain", "upstream.test",
		"-id", "spiffe://upstream.test/echo", "-client-bundle", "example.org="+filepath.Join(dir, "procmesh-bundle.pem"),
		"-bundle-out", filepath.Join(dir, "upstream-bundle.pem"), "-http", httpAddr, "-tcp", freeAddr(t))
	echo.Stdout, echo.Stderr = n.log, n.log
	if err := echo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Process.Kill(); echo.Wait() })
	waitFor(t, n.log, func() bool {
		fi, err := os.Stat(filepath.Join(dir, "upstream-bundle.pem"))
		return err == nil && fi.Size() > 0
	})
	pm := exec.Command(filepath.Join(bin, "procmesh"), "run", "-config", path)
	pm.Stdout, pm.Stderr = n.log, n.log
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pm.Process.Kill(); pm.Wait() })
	waitFor(t, n.log, func() bool {
		resp, err := http.Get("http://" + n.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return n
}

func waitFor(t *testing.T, log *syncBuffer, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not up within a minute:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client makes requests through the node's socket.
func (n *node) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", n.sock)
		},
	}}
}

// traffic sends requests until ctx is done and returns how many answered
// 200.
func (n *node) traffic(ctx context.Context) <-chan int {
	done := make(chan int, 1)
	go func() {
		c, ok := n.client(), 0
		for ctx.Err() == nil {
			resp, err := c.Get("http://echo.test/hello")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok++
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		done <- ok
	}()
	return done
}

// TestHelperRefused is not a test: run from a copy of the test binary (a
// program no entry registers), it makes one request through
// PROCMESH_HELPER_SOCK, prints the status and waits until its stdin closes.
func TestHelperRefused(t *testing.T) {
	sock := os.Getenv("PROCMESH_HELPER_SOCK")
	if sock == "" {
		return
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://echo.test/hello")
	if err != nil {
		fmt.Println("helper:", err)
	} else {
		fmt.Println("helper status", resp.StatusCode)
	}
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// refused starts an unregistered process that is refused once and stays
// alive until the test ends; it returns its PID.
func (n *node) refused(t *testing.T) int {
	t.Helper()
	self, _ := os.Executable()
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(n.dir, "unregistered-client")
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(other, "-test.run=^TestHelperRefused$")
	cmd.Env = append(os.Environ(), "PROCMESH_HELPER_SOCK="+n.sock)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	waitFor(t, out, func() bool { return strings.Contains(out.String(), "helper status") })
	if !strings.Contains(out.String(), "helper status 403") {
		t.Fatalf("the unregistered process was not refused: %s", out.String())
	}
	return cmd.Process.Pid
}
