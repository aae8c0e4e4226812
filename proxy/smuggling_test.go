package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestThreat_P1_Smuggling: request heads and bodies whose framing two
// parsers could read differently are answered 400 with the reason, the
// connection is closed, and no request (least of all the one hidden in the
// body) reaches the upstream. Written against raw bytes on the socket.
//
// net/http alone refuses empty and conflicting Content-Length, a CR in a
// field value, a space before the colon and bad chunk lines (with 400, or
// 501 for unknown transfer codings, or as a 502 "upstream failed" once the
// body is being forwarded); it accepts Content-Length with
// Transfer-Encoding (dropping Content-Length), Transfer-Encoding in
// HTTP/1.0 (framing by Content-Length instead), obs-fold lines and
// underscore spellings of framing headers. procmesh refuses all of them.
func TestThreat_P1_Smuggling(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: echo.test\r\n\r\n"
	for _, c := range []struct {
		name, req, want string
	}{
		{"cl-and-te", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			"both Content-Length and Transfer-Encoding"},
		{"te-and-cl", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled,
			"both Content-Length and Transfer-Encoding"},
		{"te-in-http10", "POST /p1 HTTP/1.0\r\nHost: echo.test\r\nConnection: keep-alive\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			"Transfer-Encoding in an HTTP/1.0 request"},
		{"empty-cl", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nContent-Length: \r\n\r\n" + smuggled,
			`invalid Content-Length ""`},
		{"differing-cl", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 3\r\nContent-Length: 44\r\n\r\nabc" + smuggled,
			"conflicting Content-Length values"},
		{"cl-plus-sign", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nContent-Length: +3\r\n\r\nabc" + smuggled,
			`invalid Content-Length "+3"`},
		{"te-cr-prefix", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: \rchunked\r\n\r\n0\r\n\r\n" + smuggled,
			`Transfer-Encoding "\rchunked"`},
		{"te-xchunked", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
			`Transfer-Encoding "xchunked"`},
		{"te-list", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled,
			`Transfer-Encoding "chunked, identity"`},
		{"te-twice", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			"only a single"},
		{"te-folded", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc" + smuggled,
			"obsolete line folding"},
		{"te-underscore", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 3\r\nTransfer_Encoding: chunked\r\n\r\nabc" + smuggled,
			"would read as transfer-encoding"},
		{"bare-lf-chunk-size", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n" + smuggled,
			"chunk-size line ends with a bare LF"},
		{"early-chunk-end", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel\r\n0\r\n\r\n" + smuggled,
			"chunk data not followed by CRLF"},
		{"chunk-size-overflow", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled,
			"chunk size too large"},
		{"bare-lf-trailer", "POST /p1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\n" + smuggled,
			"trailer line not ended by CRLF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, closed := rawExchange(t, e.sock, c.req, 5*time.Second)
			status, _, _ := strings.Cut(resp, "\r\n")
			if status != "HTTP/1.1 400 Bad Request" || !strings.Contains(resp, c.want) {
				t.Errorf("answer %q, want 400 saying %q", resp, c.want)
			}
			if !closed {
				t.Error("the connection stayed open")
			}
			if n := strings.Count(resp, "HTTP/1.1 "); n != 1 {
				t.Errorf("%d responses on the connection, want 1:\n%s", n, resp)
			}
		})
	}
	for _, r := range e.echo.Records() {
		t.Errorf("upstream saw %s %s", r.Method, r.Path)
	}
	if n := len(e.audit.Lines(`"status":400`, `"spiffe_id":"spiffe://example.org/a"`)); n < 12 {
		t.Errorf("%d audit lines with status 400 naming the caller, want one per refused head:\n%s", n, e.audit.String())
	}
}

// TestSmugglingGuardPassesValidFraming: what the guard must not break.
// Pipelined requests, chunked bodies with extensions and trailers, the
// CRLF some clients send after a POST body, and bare-LF heads all arrive
// intact, in order, on one connection.
func TestSmugglingGuardPassesValidFraming(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	req := "POST /v1 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"\r\n" + // tolerated after a POST
		"POST /v2 HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4\r\n\r\nabcd" +
		"GET /v3 HTTP/1.1\nHost: echo.test\n\n" +
		"GET /v4 HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n"
	resp, closed := rawExchange(t, e.sock, req, 5*time.Second)
	if n := strings.Count(resp, "HTTP/1.1 200 OK"); n != 4 || !closed {
		t.Fatalf("%d answers 200 (closed %v), want 4:\n%s", n, closed, resp)
	}
	var got []string
	for _, r := range e.echo.Records() {
		got = append(got, r.Path)
		if r.Path == "/v1" && r.BodyLen != 11 || r.Path == "/v2" && r.BodyLen != 4 {
			t.Errorf("%s arrived with %d body bytes", r.Path, r.BodyLen)
		}
	}
	if strings.Join(got, " ") != "/v1 /v2 /v3 /v4" {
		t.Errorf("upstream saw %v", got)
	}
}

// TestThreat_P2_HopByHop: hop-by-hop fields, fields the Connection header
// names, and Proxy-Authorization never reach the upstream; end-to-end
// fields do, and TE only as "trailers" (which gRPC needs).
func TestThreat_P2_HopByHop(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	req := "POST /p2 HTTP/1.1\r\nHost: echo.test\r\n" +
		"Connection: keep-alive, X-Secret, X-Other\r\nX-Secret: s\r\nX-Other: o\r\n" +
		"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic c2VjcmV0\r\n" +
		"TE: trailers, deflate\r\nTrailer: X-Trailer\r\nUpgrade: foo/1\r\n" +
		"X-End-To-End: kept\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"
	resp, _ := rawExchange(t, e.sock, req, 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("answer %q", resp)
	}
	recs := e.echo.Records()
	if len(recs) != 1 {
		t.Fatalf("upstream saw %d requests", len(recs))
	}
	h := http.Header(recs[0].Header)
	for _, k := range []string{"Connection", "X-Secret", "X-Other", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Trailer", "Upgrade", "Transfer-Encoding"} {
		if v, ok := h[k]; ok {
			t.Errorf("upstream saw %s: %q", k, v)
		}
	}
	if h.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end field lost: %v", h)
	}
	if te := h.Values("Te"); len(te) != 1 || te[0] != "trailers" {
		t.Errorf("upstream saw TE %q, want only \"trailers\"", te)
	}
	if recs[0].BodyLen != 3 {
		t.Errorf("body of %d bytes arrived, want 3", recs[0].BodyLen)
	}
}

// TestThreat_P3_H2CUpgrade: "Upgrade: h2c" (or any upgrade but WebSocket)
// is not passed upstream, and the connection closes after the answer; an
// upstream that switches protocols anyway is refused; a non-101 answer to
// a WebSocket upgrade is an ordinary answer, after which nothing the client
// sent is tunnelled or parsed as another request.
func TestThreat_P3_H2CUpgrade(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	up := e.startUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/switch-anyway":
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nRAW-FROM-UPSTREAM")
			brw.Flush()
			io.Copy(io.Discard, c)
		default: // no upgrade here
			w.Write([]byte("plain answer"))
		}
	}))
	e.srv.SetState(e.statePlus(upRoute("up", up)))

	t.Run("h2c-stripped", func(t *testing.T) {
		req := "GET /h2c HTTP/1.1\r\nHost: echo.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" +
			"GET /after-h2c HTTP/1.1\r\nHost: echo.test\r\n\r\n"
		resp, closed := rawExchange(t, e.sock, req, 5*time.Second)
		if !strings.HasPrefix(resp, "HTTP/1.1 200") || !closed || strings.Count(resp, "HTTP/1.1 ") != 1 {
			t.Errorf("answer (closed %v) %q, want one 200 then close", closed, resp)
		}
		recs := e.echo.Records()
		if len(recs) != 1 {
			t.Fatalf("upstream saw %d requests, want 1", len(recs))
		}
		for _, k := range []string{"Upgrade", "Connection", "Http2-Settings"} {
			if v, ok := recs[0].Header[k]; ok {
				t.Errorf("upstream saw %s: %q", k, v)
			}
		}
	})
	t.Run("upstream-switches-unasked", func(t *testing.T) {
		req := "GET /switch-anyway HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
		resp, closed := rawExchange(t, e.sock, req, 5*time.Second)
		if !strings.HasPrefix(resp, "HTTP/1.1 502") || strings.Contains(resp, "RAW-FROM-UPSTREAM") || !closed {
			t.Errorf("answer (closed %v) %q, want 502 and no upstream bytes", closed, resp)
		}
	})
	t.Run("websocket-refused-by-upstream", func(t *testing.T) {
		before := len(e.echo.Records())
		req := "GET /no-ws HTTP/1.1\r\nHost: up.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(b) != "plain answer" || !resp.Close {
			t.Fatalf("status %d close %v body %q, want the plain 200 and Connection: close", resp.StatusCode, resp.Close, b)
		}
		// What the client sends after a refused upgrade goes nowhere.
		io.WriteString(c, "GET /after-refused-upgrade HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Errorf("after the refused upgrade the connection answered %q", rest)
		}
		if n := len(e.echo.Records()); n != before {
			t.Errorf("bytes sent after a non-101 answer reached the upstream as %d requests", n-before)
		}
	})
}
