package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/net/websocket"

	"github.com/procmesh/procmesh/proxy"
)

// wsUpstream is a WebSocket server: it greets each client with the SPIFFE
// ID it verified on the mTLS connection, then echoes every message.
func wsUpstream() http.Handler {
	return websocket.Server{Handler: func(ws *websocket.Conn) {
		id, err := x509svid.IDFromCert(ws.Request().TLS.PeerCertificates[0])
		if err != nil {
			return
		}
		if websocket.Message.Send(ws, "spiffe_id="+id.String()) != nil {
			return
		}
		for {
			var m string
			if websocket.Message.Receive(ws, &m) != nil {
				return
			}
			if websocket.Message.Send(ws, "echo:"+m) != nil {
				return
			}
		}
	}}
}

// wsDial opens a WebSocket to target (ws://host/path) through procmesh's
// socket.
func wsDial(sock, target string) (*websocket.Conn, error) {
	cfg, err := websocket.NewConfig(target, "http://client.test/")
	if err != nil {
		return nil, err
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		c.Close()
	}
	return ws, err
}

// wsHello reads the greeting, sends msg and reads its echo.
func wsHello(ws *websocket.Conn, msg string) (greeting, echo string, err error) {
	if err := websocket.Message.Receive(ws, &greeting); err != nil {
		return "", "", err
	}
	if err := websocket.Message.Send(ws, msg); err != nil {
		return greeting, "", err
	}
	err = websocket.Message.Receive(ws, &echo)
	return greeting, echo, err
}

// runWebSocketClient is the child-process mode "websocket": one WebSocket
// to PM_URL, the greeting and one echo printed as the body.
func runWebSocketClient(sock, target string, out *json.Encoder) error {
	ws, err := wsDial(sock, target)
	if err != nil {
		return out.Encode(clientResult{Err: err.Error()})
	}
	defer ws.Close()
	greeting, echo, err := wsHello(ws, "hello from the child")
	if err != nil {
		return out.Encode(clientResult{Err: err.Error()})
	}
	return out.Encode(clientResult{Status: http.StatusSwitchingProtocols, Body: greeting + "\n" + echo})
}

// TestWebSocketPassThrough: a WebSocket upgrade passes through procmesh;
// the upstream connection carries the calling process's SVID, the audit
// line counts the bytes of the session, and Shutdown waits for an open
// WebSocket, which keeps working until it closes.
func TestWebSocketPassThrough(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	a := e.client("a", "")
	e.selfAsA(a)
	up := e.startUpstream(wsUpstream())
	e.srv.SetState(e.statePlus(upRoute("ws", up)))

	rs, err := e.run(a, -1, "websocket", "PM_URL=ws://ws.test/chat")
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe_id=" + idA.String() + "\necho:hello from the child"; len(rs) != 1 || rs[0].Body != want {
		t.Fatalf("the child saw %+v, want %q", rs, want)
	}
	for _, id := range up.clientIDs() {
		if id != idA {
			t.Errorf("the upstream was called as %s, want %s", id, idA)
		}
	}
	// The line is written when the session ends, as the upstream closes.
	var lines []string
	eventually(5*time.Second, func() bool {
		lines = e.audit.Lines(`"target":"/chat"`, `"status":101`, `"spiffe_id":"spiffe://example.org/a"`)
		return len(lines) > 0
	})
	if len(lines) != 1 {
		t.Fatalf("want one audit line for the WebSocket:\n%s", e.audit.String())
	}
	var line struct {
		Up   int64 `json:"bytes_up"`
		Down int64 `json:"bytes_down"`
	}
	json.Unmarshal([]byte(lines[0]), &line)
	// The client sent a masked 20-byte message and the closing frame; the
	// upstream sent the 101, the greeting and the echo.
	if line.Up < 26 || line.Down < int64(len("spiffe_id=")+len(idA.String())+len("echo:hello from the child")) {
		t.Errorf("audit line counts %d bytes up, %d down: %s", line.Up, line.Down, lines[0])
	}

	t.Run("shutdown-drains", func(t *testing.T) {
		ws, err := wsDial(e.sock, "ws://ws.test/drain")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if _, _, err := wsHello(ws, "before"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done <- e.srv.Shutdown(ctx)
		}()
		if !eventually(5*time.Second, func() bool {
			c, err := net.Dial("unix", e.sock)
			if err == nil {
				c.Close()
			}
			return err != nil
		}) {
			t.Fatal("the socket still accepts connections after Shutdown")
		}
		var echo string
		if err := websocket.Message.Send(ws, "during drain"); err != nil {
			t.Fatal(err)
		}
		if err := websocket.Message.Receive(ws, &echo); err != nil || echo != "echo:during drain" {
			t.Fatalf("WebSocket during the drain: %q %v", echo, err)
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a WebSocket open", err)
		default:
		}
		ws.Close()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Shutdown after the WebSocket closed: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Shutdown did not return after the WebSocket closed")
		}
		if !eventually(5*time.Second, func() bool { return strings.Contains(e.audit.String(), `"target":"/drain"`) }) {
			t.Errorf("no audit line for the drained WebSocket:\n%s", e.audit.String())
		}
	})
	t.Run("shutdown-deadline-closes", func(t *testing.T) {
		lp := e.startLimited("ws-deadline", proxy.Limits{}, upRoute("ws", up))
		ws, err := wsDial(lp.sock, "ws://ws.test/cut")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if _, _, err := wsHello(ws, "before"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- lp.srv.Shutdown(ctx) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown returned %v, want the deadline", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Shutdown past its deadline did not return")
		}
		var m string
		if err := websocket.Message.Receive(ws, &m); err == nil {
			t.Errorf("the WebSocket still works after Shutdown's deadline: %q", m)
		}
	})
}
