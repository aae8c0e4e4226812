package proxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/procmesh/procmesh/proxy"
)

// closesWithin reads c until the server closes (or resets) it and fails
// the test if that takes longer than d; it returns what was read.
func closesWithin(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %v (read %.200q)", d, b)
	}
	return string(b)
}

// dribble writes s one byte every gap until a write fails.
func dribble(c net.Conn, s string, gap time.Duration) {
	for i := 0; ; i = (i + 1) % len(s) {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return
		}
		time.Sleep(gap)
	}
}

// TestThreat_P7_Slowloris: a client or upstream that stalls cannot hold a
// request forever. Each case ends within its limit (tests use limits of a
// few hundred milliseconds), with the status the limit implies and the
// limit named, and the goroutines of all of them end.
func TestThreat_P7_Slowloris(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	release := make(chan struct{})
	up := e.startUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/never-answers", "/never-reads":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/trickle":
			for {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
				select {
				case <-release:
					return
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}))
	const (
		rht  = 300 * time.Millisecond
		idle = 400 * time.Millisecond
	)
	lp := e.startLimited("p7", proxy.Limits{ReadHeaderTimeout: rht, IdleTimeout: 4 * time.Second, StreamIdleTimeout: idle},
		upRoute("up", up), upRoute("ws", e.startUpstream(wsUpstream())))
	base := warmBaseline(t, lp.sock)
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("unix", lp.sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("headers-dribbled", func(t *testing.T) {
		c := dial(t)
		go dribble(c, "GET /slowloris HTTP/1.1\r\nHost: echo.test\r\nX-A: 1\r\n", 20*time.Millisecond)
		if got := closesWithin(t, c, 2*time.Second); got != "" {
			t.Errorf("answered %q", got)
		}
	})
	t.Run("headers-dribbled-on-keep-alive", func(t *testing.T) {
		// The header timeout runs from the first byte of each request, not
		// only of the connection (net/http alone would wait IdleTimeout).
		c := dial(t)
		io.WriteString(c, "GET /first HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		br := bufio.NewReader(c)
		if s := readStatus(t, br); s != http.StatusOK {
			t.Fatalf("first request: %d", s)
		}
		go dribble(c, "GET /slowloris HTTP/1.1\r\nHost: echo.test\r\nX-A: 1\r\n", 20*time.Millisecond)
		start := time.Now()
		rest, _ := io.ReadAll(br)
		if el := time.Since(start); el > 2*time.Second || len(rest) != 0 {
			t.Errorf("closed after %v, answering %q; want a silent close within 2s", el, rest)
		}
	})
	t.Run("slow-body", func(t *testing.T) {
		c := dial(t)
		io.WriteString(c, "POST /slow-body HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1000\r\n\r\n0123456789")
		got := closesWithin(t, c, 3*time.Second)
		if !strings.HasPrefix(got, "HTTP/1.1 408") || !strings.Contains(got, "limits.stream_idle_timeout: 400ms") {
			t.Errorf("answered %q, want 408 naming the limit", got)
		}
	})
	t.Run("slow-reader", func(t *testing.T) {
		c := dial(t)
		io.WriteString(c, "GET /bytes/67108864 HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		// Never read: procmesh blocks writing, then gives up.
		if !eventually(5*time.Second, func() bool {
			return len(lp.audit.Lines(`"target":"/bytes/67108864"`, "limits.stream_idle_timeout")) == 1
		}) {
			t.Fatalf("no audit line ending the response:\n%s", lp.audit.String())
		}
		got := closesWithin(t, c, 3*time.Second)
		if len(got) >= 64<<20 {
			t.Errorf("the whole response arrived")
		}
	})
	t.Run("upstream-never-answers", func(t *testing.T) {
		resp, closed := rawExchange(t, lp.sock, "GET /never-answers HTTP/1.1\r\nHost: up.test\r\n\r\n", 5*time.Second)
		if !strings.HasPrefix(resp, "HTTP/1.1 504") || !strings.Contains(resp, "limits.stream_idle_timeout: 400ms") || !closed {
			t.Errorf("answered (closed %v) %q, want 504 naming the limit", closed, resp)
		}
	})
	t.Run("upstream-never-reads", func(t *testing.T) {
		c := dial(t)
		go func() {
			io.WriteString(c, "POST /never-reads HTTP/1.1\r\nHost: up.test\r\nContent-Length: 268435456\r\n\r\n")
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		got := closesWithin(t, c, 5*time.Second)
		if !strings.HasPrefix(got, "HTTP/1.1 504") || !strings.Contains(got, "limits.stream_idle_timeout") {
			t.Errorf("answered %.200q, want 504 naming the limit", got)
		}
	})
	t.Run("websocket-idle", func(t *testing.T) {
		ws, err := wsDial(lp.sock, "ws://ws.test/idle")
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if _, _, err := wsHello(ws, "then silence"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var m string
		if err := websocket.Message.Receive(ws, &m); err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("idle WebSocket: %q %v after %v, want closed within 3s", m, err, time.Since(start))
		}
		if !eventually(2*time.Second, func() bool {
			return len(lp.audit.Lines(`"target":"/idle"`, "no byte moved on the WebSocket")) == 1
		}) {
			t.Errorf("no audit line for the idle WebSocket:\n%s", lp.audit.String())
		}
	})
	t.Run("connect-idle", func(t *testing.T) {
		c := dial(t)
		io.WriteString(c, "CONNECT echo.test:443 HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		start := time.Now()
		rest, _ := io.ReadAll(br)
		if el := time.Since(start); el > 3*time.Second || len(rest) != 0 {
			t.Errorf("idle tunnel closed after %v with %q, want within 3s", el, rest)
		}
	})
	t.Run("upstream-never-handshakes", func(t *testing.T) {
		// The connect timeout (UpstreamOptions.DialTimeout) bounds TCP
		// connect and TLS handshake, for requests and tunnels alike.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		mute := proxy.Route{Name: "mute", Host: "mute.test", Upstream: ln.Addr().String(), ServerID: echoID, Protocol: proxy.ProtocolHTTP1}
		lc := e.startLimitedUp("p7-dial", proxy.Limits{}, proxy.UpstreamOptions{DialTimeout: 300 * time.Millisecond, MaxIdlePerPool: 1}, mute)
		for _, req := range []string{
			"GET / HTTP/1.1\r\nHost: mute.test\r\nConnection: close\r\n\r\n",
			"CONNECT mute.test:443 HTTP/1.1\r\nHost: mute.test\r\n\r\n",
		} {
			start := time.Now()
			resp, _ := rawExchange(t, lc.sock, req, 5*time.Second)
			if !strings.HasPrefix(resp, "HTTP/1.1 502") || time.Since(start) > 3*time.Second {
				t.Errorf("%q answered after %v: %.200q, want 502 within 3s", req, time.Since(start), resp)
			}
		}
	})
	t.Run("request-timeout", func(t *testing.T) {
		lt := e.startLimited("p7-rt", proxy.Limits{RequestTimeout: 500 * time.Millisecond}, upRoute("up", up))
		c, err := net.Dial("unix", lt.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /trickle HTTP/1.1\r\nHost: up.test\r\n\r\n")
		got := closesWithin(t, c, 3*time.Second)
		if !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("answered %.100q", got)
		}
		if !eventually(2*time.Second, func() bool {
			return len(lt.audit.Lines(`"target":"/trickle"`, "limits.request_timeout: 500ms")) == 1
		}) {
			t.Errorf("no audit line naming the request timeout:\n%s", lt.audit.String())
		}
	})
	close(release)
	settles(t, base, 8, 10*time.Second)
	for _, r := range e.echo.Records() {
		if r.Path == "/slowloris" || r.Path == "/slow-body" {
			t.Errorf("upstream saw %s", r.Path)
		}
	}
}
