package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
)

// TestThreat_F1_WrongUpstreamID: an upstream that presents another SPIFFE
// ID than the route demands fails closed: 502, nothing sent, audit error.
func TestThreat_F1_WrongUpstreamID(t *testing.T) {
	e, a := oneClient(t, envOptions{defaultAllow: true, echoID: spiffeid.RequireFromString("spiffe://upstream.test/impostor")})
	for _, mode := range []string{"origin", "connect"} {
		rs, err := e.run(a, -1, mode, "PM_URL=http://echo.test/secret")
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Status != http.StatusBadGateway || !strings.Contains(rs[0].Body, "upstream.test/impostor") {
			t.Errorf("%s: status %d body %q, want 502 naming the unexpected ID", mode, rs[0].Status, rs[0].Body)
		}
	}
	if n := len(e.echo.Records()); n != 0 {
		t.Fatalf("a request reached the impostor upstream (%d records)", n)
	}
	if len(e.audit.Lines(`"error"`, `impostor`)) != 2 {
		t.Errorf("want 2 audit lines with the handshake error:\n%s", e.audit.String())
	}
}

// TestThreat_F1_UpstreamRefuses: a route whose upstream does not listen
// answers 502 with the dial error.
func TestThreat_F1_UpstreamRefuses(t *testing.T) {
	e, a := oneClient(t, envOptions{defaultAllow: true})
	e.echo.Close()
	rs, err := e.run(a, -1, "origin", "PM_URL=http://echo.test/")
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Status != http.StatusBadGateway || !strings.Contains(rs[0].Body, "connection refused") {
		t.Errorf("status %d body %q, want 502 connection refused", rs[0].Status, rs[0].Body)
	}
}

// TestThreat_I3_ForkThenExec pins the decision: the identity of a
// connection belongs to the process that called connect(), and only that
// process may write on it. A connection handed to another executable is
// refused at the other's first request (THREATS I12: the writer was never
// attested), with nothing sent upstream for it; a new connection from the
// other executable gets its own identity.
func TestThreat_I3_ForkThenExec(t *testing.T) {
	e, a, b := twoClients(t)
	rs, err := e.run(a, -1, "handoff", "PM_URL=http://echo.test/handoff", "PM_NEXT="+b)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("got %d replies, want 2", len(rs))
	}
	if got := decodeReply(t, rs[0]).SPIFFEID; got != idA.String() {
		t.Errorf("a's own request arrived as %s, want %s", got, idA)
	}
	if rs[1].Status != http.StatusForbidden || !strings.Contains(rs[1].Body, "written by process") {
		t.Errorf("b's request on a's connection: status %d body %q, want 403 naming the writer", rs[1].Status, rs[1].Body)
	}
	if n := len(e.echo.Records()); n != 1 {
		t.Errorf("the upstream saw %d requests, want only a's", n)
	}
	rs, err = e.run(b, -1, "origin", "PM_URL=http://echo.test/own")
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeReply(t, rs[0]).SPIFFEID; got != idB.String() {
		t.Errorf("b's own connection arrived as %s, want %s", got, idB)
	}
}

// TestThreat_F7_DrainOnShutdown: Shutdown stops accepting but lets an open
// tunnel finish; it returns once the tunnel closes.
func TestThreat_F7_DrainOnShutdown(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	self, _ := os.Executable()
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(self)}})

	c, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprint(c, "CONNECT echo.test:443 HTTP/1.1\r\nHost: echo.test\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	// New connections are refused once the listener is closed.
	for {
		nc, err := net.Dial("unix", e.sock)
		if err != nil {
			break
		}
		nc.Close()
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a tunnel open", err)
		default:
		}
	}
	// The open tunnel still works.
	fmt.Fprint(c, "GET /during-drain HTTP/1.1\r\nHost: echo.test\r\n\r\n")
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request in draining tunnel: %v", err)
	}
	io.Copy(io.Discard, r.Body)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("status %d", r.StatusCode)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a tunnel open", err)
	default:
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown after the tunnel closed: %v", err)
	}
}

// TestThreat_F8_SocketPath: a stale socket file is replaced, a live one is
// refused, anything else at the path is left alone.
func TestThreat_F8_SocketPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")

	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	s, err := proxy.Listen(proxy.ListenOptions{Path: path, Mode: 0o640, GID: -1})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, %v; want socket 0640", fi.Mode(), err)
	}

	if _, err := proxy.Listen(proxy.ListenOptions{Path: path, GID: -1}); !errors.Is(err, proxy.ErrSocketInUse) {
		t.Fatalf("live socket: got %v, want ErrSocketInUse", err)
	}
	s.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left the socket file: %v", err)
	}

	file := filepath.Join(dir, "not-a-socket")
	os.WriteFile(file, []byte("keep me"), 0o600)
	if _, err := proxy.Listen(proxy.ListenOptions{Path: file, GID: -1}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: got %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Fatal("Listen changed a regular file")
	}
}
