package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
)

// keepAlive opens a connection to sock and makes one request on it,
// returning the connection (still open unless refused), its reader and
// the response.
func keepAlive(t *testing.T, sock string) (net.Conn, *bufio.Reader, *http.Response, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /f9 HTTP/1.1\r\nHost: echo.test\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return c, br, resp, string(b)
}

// rawSession sends payload on a raw socket, half-closes, and returns the
// answer.
func rawSession(t *testing.T, sock, payload string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, payload)
	c.(*net.UnixConn).CloseWrite()
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestThreat_F9_ConnectionLimits: connections over MaxConnections or over
// MaxConnectionsPerIdentity are refused with a clear error (503 with
// Retry-After on HTTP, a line on raw sockets) while others are served; the
// slots come back when connections close; and running out of file
// descriptors makes procmesh wait and retry, not exit.
func TestThreat_F9_ConnectionLimits(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	b := e.client("b", "salt-b")
	self, _ := os.Executable()
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(self)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b)}},
	)
	refused := func(t *testing.T, resp *http.Response, body, key string) {
		t.Helper()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !resp.Close || !strings.Contains(body, key) {
			t.Errorf("got %d Retry-After %q close %v %q, want 503, Retry-After, Connection: close, naming %s",
				resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close, body, key)
		}
	}

	t.Run("per-identity", func(t *testing.T) {
		lp := e.startLimited("f9-id", proxy.Limits{MaxConnectionsPerIdentity: 2})
		c1, _, r1, _ := keepAlive(t, lp.sock)
		_, _, r2, _ := keepAlive(t, lp.sock)
		if r1.StatusCode != 200 || r2.StatusCode != 200 {
			t.Fatalf("first two connections: %d %d", r1.StatusCode, r2.StatusCode)
		}
		_, _, r3, body := keepAlive(t, lp.sock)
		refused(t, r3, body, "limits.max_connections_per_identity: 2")
		if got := rawSession(t, lp.rawSock, "x"); !strings.Contains(got, "spiffe://example.org/a has too many connections open") || !strings.Contains(got, "(limits.max_connections_per_identity: 2)") {
			t.Errorf("raw socket answered %q", got)
		}
		// Another identity is not affected.
		rs, err := e.run(b, -1, "origin", "PM_SOCK="+lp.sock, "PM_URL=http://echo.test/b")
		if err != nil || rs[0].Status != 200 {
			t.Errorf("b: %+v %v", rs, err)
		}
		c1.Close()
		if !eventually(5*time.Second, func() bool {
			_, _, r, _ := keepAlive(t, lp.sock)
			return r.StatusCode == 200
		}) {
			t.Error("a closed connection's slot never came back")
		}
	})

	t.Run("total", func(t *testing.T) {
		lp := e.startLimited("f9-total", proxy.Limits{MaxConnections: 2, MaxConnectionsPerIdentity: -1})
		c1, _, r1, _ := keepAlive(t, lp.sock)
		_, _, r2, _ := keepAlive(t, lp.sock)
		if r1.StatusCode != 200 || r2.StatusCode != 200 {
			t.Fatalf("first two connections: %d %d", r1.StatusCode, r2.StatusCode)
		}
		_, _, r3, body := keepAlive(t, lp.sock)
		refused(t, r3, body, "limits.max_connections: 2")
		resp, err := h2cClient(lp.sock).Get("http://echo.test/f9-h2")
		if err != nil {
			t.Fatal(err)
		}
		h2body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(h2body), "limits.max_connections: 2") {
			t.Errorf("h2c: %d %q", resp.StatusCode, h2body)
		}
		if got := rawSession(t, lp.rawSock, "x"); !strings.Contains(got, "too many client connections are open; retry later (limits.max_connections: 2)") {
			t.Errorf("raw socket answered %q", got)
		}
		c1.Close()
		if !eventually(5*time.Second, func() bool {
			_, _, r, _ := keepAlive(t, lp.sock)
			return r.StatusCode == 200
		}) {
			t.Error("a closed connection's slot never came back")
		}
		if n := len(lp.audit.Lines(`"status":503`, "limits.max_connections: 2")); n < 2 {
			t.Errorf("%d audit lines for refused connections:\n%s", n, lp.audit.String())
		}
	})

	t.Run("out-of-descriptors", func(t *testing.T) {
		lp := e.startLimited("f9-fd", proxy.Limits{})
		if got := rawSession(t, lp.rawSock, "warm"); !strings.Contains(got, "warm") {
			t.Fatalf("raw socket: %q", got)
		}
		// The client sockets are made before the limit drops and connected
		// after it: connecting takes no descriptor, so the test needs none
		// of its own while procmesh's accepts on both sockets run out.
		sock := func() int {
			fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}
		var mainFDs, rawFDs []int
		for i := 0; i < 4; i++ {
			mainFDs, rawFDs = append(mainFDs, sock()), append(rawFDs, sock())
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		fds, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		low := lim
		low.Cur = uint64(len(fds)) - 1 // the listing's own descriptor is closed again
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
			t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
					t.Fatal(err)
				}
			}
		}
		defer restore()
		connect := func(fds []int, path string) {
			for _, fd := range fds {
				if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
					t.Fatalf("connect %s: %v", path, err)
				}
			}
		}
		connect(mainFDs, lp.sock)
		connect(rawFDs, lp.rawSock)
		waited := eventually(5*time.Second, func() bool {
			failed := func(sock string) bool {
				for _, l := range lp.log.Lines("too many open files") {
					if strings.Contains(l, "accept failed; retrying") && strings.Contains(l, `"socket":"`+sock+`"`) {
						return true
					}
				}
				return false
			}
			return failed(lp.sock) && failed(lp.rawSock)
		})
		restore()
		if !waited {
			t.Fatalf("no accept error logged for both sockets:\n%s", lp.log.String())
		}
		t.Logf("while out of descriptors:\n%s", strings.Join(lp.log.Lines("too many open files")[:2], "\n"))
		conns := func(fds []int) []net.Conn {
			var cs []net.Conn
			for _, fd := range fds {
				f := os.NewFile(uintptr(fd), "client")
				c, err := net.FileConn(f)
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			return cs
		}
		held, heldRaw := conns(mainFDs), conns(rawFDs)
		// The connections that waited are served, or, if attesting them
		// ran out of descriptors too, told so; none is dropped silently.
		c := held[len(held)-1]
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /after-emfile HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("a connection made while out of descriptors: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK && !strings.Contains(string(body), "too many open files") {
			t.Errorf("a connection made while out of descriptors got %d %q", resp.StatusCode, body)
		}
		rc := heldRaw[len(heldRaw)-1]
		rc.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(rc, "after")
		rc.(*net.UnixConn).CloseWrite()
		if got, _ := io.ReadAll(rc); !strings.Contains(string(got), "after") && !strings.Contains(string(got), "too many open files") {
			t.Errorf("raw connection made while out of descriptors answered %q", got)
		}
		for _, c := range append(held, heldRaw...) {
			c.Close()
		}
		// Both sockets still serve.
		if _, _, r, _ := keepAlive(t, lp.sock); r.StatusCode != http.StatusOK {
			t.Errorf("new connection after: %d", r.StatusCode)
		}
		if got := rawSession(t, lp.rawSock, "later"); !strings.Contains(got, "later") {
			t.Errorf("new raw connection after: %q", got)
		}
	})
}
