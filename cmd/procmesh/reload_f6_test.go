package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestThreat_F6_ReloadClosesWhatItNoLongerAllows: tightening policy closes
// an open tunnel to the route it no longer allows; removing the identity
// refuses the next request on a keep-alive connection.
func TestThreat_F6_ReloadClosesWhatItNoLongerAllows(t *testing.T) {
	e := newReloadEnv(t)
	tunnel, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer tunnel.Close()
	br := bufio.NewReader(tunnel)
	fmt.Fprint(tunnel, "CONNECT echo2.test:443 HTTP/1.1\r\nHost: echo2.test\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	c := e.client()
	if status, err := e.get(c, "http://echo.test/"); err != nil || status != http.StatusOK {
		t.Fatalf("keep-alive request: %d %v", status, err)
	}

	e.write(e.config(true, false)) // echo2 no longer allowed
	if err := e.rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	// The reload closes before it returns; 2s is well inside the 10s after
	// which the upstream would drop an idle tunnel on its own.
	tunnel.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the tunnel to echo2 stayed open after the policy stopped allowing it")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the tunnel to echo2 was not closed by the reload")
	}
	if status, err := e.get(c, "http://echo.test/"); err != nil || status != http.StatusOK {
		t.Fatalf("echo is still allowed: %d %v", status, err)
	}

	e.write(e.config(false, false)) // the identity is gone
	if err := e.rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	if status, _ := e.get(c, "http://echo.test/"); status != http.StatusForbidden {
		t.Fatalf("request from a removed identity answered %d, want 403", status)
	}
}
