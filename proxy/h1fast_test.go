package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// unixClient is an HTTP/1.1 client of sock that sends origin-form
// requests (the Host header picks the route), on keep-alive connections.
func unixClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			DisableCompression: true,
		},
	}
}

// TestFastPathServesAndHandsOff: plain keep-alive and pipelined requests
// are forwarded by the fast path; the first request it does not serve (a
// chunked body) hands the connection to net/http, which serves that
// request and the ones after it on the same connection.
func TestFastPathServesAndHandsOff(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	lp := e.startLimited("fast", proxy.Limits{})

	c, err := net.Dial("unix", lp.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func(method, path string) {
		t.Helper()
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), path) {
			t.Fatalf("%s %s: %d %q", method, path, res.StatusCode, body)
		}
	}
	// Three pipelined requests in one write, one with a body.
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: echo.test\r\n\r\n"+
		"POST /two HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\n\r\nhello"+
		"GET /three HTTP/1.1\r\nHost: echo.test\r\n\r\n")
	read("GET", "/one")
	read("POST", "/two")
	read("GET", "/three")
	wantStats(t, lp, 3, 0)
	// A chunked body is net/http's; the request after it too.
	io.WriteString(c, "POST /four HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	read("POST", "/four")
	io.WriteString(c, "GET /five HTTP/1.1\r\nHost: echo.test\r\n\r\n")
	read("GET", "/five")
	wantStats(t, lp, 3, 1)
	if n := len(lp.audit.Lines(`"event":"request"`)); n != 5 {
		t.Errorf("%d audit lines for 5 requests:\n%s", n, lp.audit.String())
	}
}

// TestFastPathRefusalsHandOff: a request the fast path would refuse is
// answered by the net/http path's code, with its message.
func TestFastPathRefusalsHandOff(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	lp := e.startLimited("fastref", proxy.Limits{})
	resp, _ := rawExchange(t, lp.sock, "GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 403") || !strings.Contains(resp, `no route for host "nowhere.test"`) {
		t.Errorf("unrouted host: %q", resp)
	}
	wantStats(t, lp, 0, 1)
}

// TestFastPathMessages: response framings the fast path must carry as the
// upstream sent them: chunked with trailers, streaming, HEAD, 204, 304,
// an interim 103, a large body, and requests with and without bodies.
func TestFastPathMessages(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	up := e.startUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "part one;")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
			w.Header().Set("X-Sum", "42")
		case "/head":
			w.Header().Set("Content-Length", "1234")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notmodified":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/early":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			io.WriteString(w, "final")
		case "/big":
			io.WriteString(w, big)
		case "/echo-body":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d %q", r.Method, r.ContentLength, b)
		case "/hop":
			fmt.Fprintf(w, "keep-alive=%q x-drop=%q x-keep=%q xff=%q", r.Header.Get("Keep-Alive"), r.Header.Get("X-Drop"),
				r.Header.Get("X-Keep"), r.Header.Get("X-Forwarded-For"))
		}
	}))
	lp := e.startLimited("fastmsg", proxy.Limits{}, upRoute("up", up))
	hc := unixClient(lp.sock)

	get := func(method, path string, body io.Reader) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://up.test"+path, body)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("%s %s body: %v", method, path, err)
		}
		return res, string(b)
	}
	if res, body := get("GET", "/trailers", nil); body != "part one;part two" || res.Trailer.Get("X-Sum") != "42" {
		t.Errorf("chunked with trailers: body %q trailer %v", body, res.Trailer)
	}
	if res, body := get("HEAD", "/head", nil); res.ContentLength != 1234 || body != "" {
		t.Errorf("HEAD: Content-Length %d body %q", res.ContentLength, body)
	}
	if res, body := get("GET", "/nocontent", nil); res.StatusCode != http.StatusNoContent || body != "" {
		t.Errorf("204: %d %q", res.StatusCode, body)
	}
	if res, _ := get("GET", "/notmodified", nil); res.StatusCode != http.StatusNotModified || res.Header.Get("ETag") != `"v1"` {
		t.Errorf("304: %d %v", res.StatusCode, res.Header)
	}
	if res, body := get("GET", "/early", nil); res.StatusCode != http.StatusOK || body != "final" {
		t.Errorf("after a 103: %d %q", res.StatusCode, body)
	}
	if _, body := get("GET", "/big", nil); body != big {
		t.Errorf("1 MiB body: got %d bytes", len(body))
	}
	if _, body := get("POST", "/echo-body", strings.NewReader("payload")); body != `POST 7 "payload"` {
		t.Errorf("POST body: %q", body)
	}
	if _, body := get("PUT", "/echo-body", http.NoBody); body != `PUT 0 ""` {
		t.Errorf("empty PUT: %q", body)
	}
	req, _ := http.NewRequest("GET", "http://up.test/hop", nil)
	req.Header.Set("Connection", "X-Drop")
	req.Header.Set("X-Drop", "1")
	req.Header.Set("X-Keep", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := `keep-alive="" x-drop="" x-keep="1" xff=""`; string(b) != want {
		t.Errorf("hop-by-hop fields: upstream saw %s, want %s", b, want)
	}
	wantStats(t, lp, 9, 0)
}

// TestFastPathStaleUpstreamConnection: a pooled connection the upstream
// closed while idle is not used for the next request, with or without a
// body: a bodiless request is retried once on a new connection, a request
// with a body never goes to a connection the liveness probe finds closed.
func TestFastPathStaleUpstreamConnection(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	var conns atomic.Int64
	up := e.startUpstreamWith(func(srv *http.Server) {
		srv.IdleTimeout = 50 * time.Millisecond
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}))
	lp := e.startLimited("stale", proxy.Limits{}, upRoute("up", up))
	hc := unixClient(lp.sock)
	for i, m := range []string{"GET", "POST", "GET", "POST"} {
		req, _ := http.NewRequest(m, "http://up.test/", strings.NewReader("b"))
		if m == "GET" {
			req.Body, req.ContentLength = nil, 0
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("request %d (%s) after the upstream closed its idle connection: %v", i, m, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("request %d (%s): %d %s", i, m, res.StatusCode, b)
		}
		time.Sleep(200 * time.Millisecond) // the upstream closes the connection
	}
	if n := conns.Load(); n != 4 {
		t.Errorf("upstream saw %d connections for 4 requests spaced past its idle timeout, want 4", n)
	}
}

// TestThreat_F6_ReloadEndsFastPathRequest: a request in flight on the fast
// path that a reload no longer allows is ended with 403, and the upstream
// sees its connection go.
func TestThreat_F6_ReloadEndsFastPathRequest(t *testing.T) {
	lp, up, gone := neverAnswering(t, "f6fast")
	done := make(chan string)
	go func() {
		resp, _ := rawExchange(t, lp.sock, "GET /slow HTTP/1.1\r\nHost: up.test\r\n\r\n", 10*time.Second)
		done <- resp
	}()
	if !eventually(5*time.Second, func() bool { return len(up.clientIDs()) == 1 }) {
		t.Fatal("the request never reached the upstream")
	}
	pol, err := policy.New(false, []policy.Rule{{Name: "echo-only", From: []spiffeid.ID{idA}, To: []string{"echo"}}})
	if err != nil {
		t.Fatal(err)
	}
	echoRoute, _ := lp.srv.State().Route("echo")
	upR, _ := lp.srv.State().Route("up")
	st, err := proxy.NewState([]proxy.Route{*echoRoute, *upR}, pol)
	if err != nil {
		t.Fatal(err)
	}
	lp.srv.SetState(st)
	if resp := <-done; !strings.HasPrefix(resp, "HTTP/1.1 403") || !strings.Contains(resp, "no longer allows") {
		t.Errorf("in-flight request after the reload: %q", resp)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Error("the upstream request was not ended")
	}
}

// TestFastPathClientHangsUp: a client that closes its connection while the
// upstream has not answered ends the upstream request too (as net/http's
// background read does), and the audit line says so; the upstream is not
// left holding it until the stream idle timeout.
func TestFastPathClientHangsUp(t *testing.T) {
	lp, up, gone := neverAnswering(t, "hangup")
	c, err := net.Dial("unix", lp.sock)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /long-poll HTTP/1.1\r\nHost: up.test\r\n\r\n")
	if !eventually(5*time.Second, func() bool { return len(up.clientIDs()) == 1 }) {
		t.Fatal("the request never reached the upstream")
	}
	// Past fastLinger: no deadline of the connection's idle wait may end
	// the watch before the client leaves.
	time.Sleep(300 * time.Millisecond)
	c.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request outlived its client")
	}
	if !eventually(5*time.Second, func() bool {
		return len(lp.audit.Lines(`"target":"/long-poll"`, `"status":499`, "closed its connection")) == 1
	}) {
		t.Errorf("no audit line for the abandoned request:\n%s", lp.audit.String())
	}
}

// neverAnswering starts an env with an upstream whose handler waits until its
// request ends (gone closes then), and a data plane named name with a
// route "up" (host up.test) to it.
func neverAnswering(t *testing.T, name string) (*limProxy, *testUpstream, chan struct{}) {
	t.Helper()
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	gone := make(chan struct{})
	up := e.startUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(gone)
	}))
	return e.startLimited(name, proxy.Limits{}, upRoute("up", up)), up, gone
}

// TestFastPathIdleWaitMoves: a keep-alive connection idle past the linger
// (its wait moves to a fresh goroutine with a small stack) still serves
// its next request, and still closes after limits.idle_timeout counted
// from its last request.
func TestFastPathIdleWaitMoves(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	const idle = 600 * time.Millisecond
	lp := e.startLimited("linger", proxy.Limits{IdleTimeout: idle})
	c, err := net.Dial("unix", lp.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(path string) {
		t.Helper()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, res.StatusCode)
		}
	}
	get("/before")
	time.Sleep(300 * time.Millisecond) // past the linger, within idle_timeout
	get("/after-move")
	last := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the idle connection sent bytes")
	}
	if waited := time.Since(last); waited < idle-50*time.Millisecond || waited > idle+2*time.Second {
		t.Errorf("idle connection closed %v after its last request, want about %v", waited, idle)
	}
	wantStats(t, lp, 2, 0)
}

// TestFastPathMalformedHeadHandsOffOnce: heads Go's parser accepts but
// net/http's server refuses (a space in a field name, a control byte in a
// value, no Host, a malformed Host) are not forwarded by the fast path:
// each reaches net/http once, whole, and is answered 400 there.
func TestFastPathMalformedHeadHandsOffOnce(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	lp := e.startLimited("badhead", proxy.Limits{})
	for i, head := range []string{
		"GET /bad HTTP/1.1\r\nHost: echo.test\r\nBad Name: x\r\nX-After: y\r\n\r\n",
		"GET /bad HTTP/1.1\r\nHost: echo.test\r\nX-Ctl: a\x01b\r\n\r\n",
		"GET http://echo.test/bad HTTP/1.1\r\nX-A: 1\r\n\r\n",
		"GET /bad HTTP/1.1\r\nHost: echo.test/x\r\n\r\n",
	} {
		resp, closed := rawExchange(t, lp.sock, head, 5*time.Second)
		if !strings.HasPrefix(resp, "HTTP/1.1 400") || strings.Count(resp, "HTTP/1.1 ") != 1 || !closed {
			t.Errorf("%q: %q (closed %v), want one 400 and a close", head, resp, closed)
		}
		wantStats(t, lp, 0, int64(i+1))
	}
}

// TestThreat_F1_UpstreamResetsMidStream: an upstream that closes in the
// middle of a body. A small body, not yet sent on, becomes a 502 naming
// the failure; a large one already streaming is cut, so the client sees
// a short body and a closed connection, never a complete-looking one. Both
// leave an audit line with the error.
func TestThreat_F1_UpstreamResetsMidStream(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	up := e.startUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, sent := 100, 5
		if r.URL.Path == "/large" {
			n, sent = 1<<20, 64<<10
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("x", sent))
		brw.Flush()
	}))
	lp := e.startLimited("midstream", proxy.Limits{}, upRoute("up", up))

	resp, closed := rawExchange(t, lp.sock, "GET /small HTTP/1.1\r\nHost: up.test\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 502") || !strings.Contains(resp, "cut short after 5 of 100 bytes") || !closed {
		t.Errorf("small body cut short: %q (closed %v), want a 502 saying so", resp, closed)
	}
	resp, closed = rawExchange(t, lp.sock, "GET /large HTTP/1.1\r\nHost: up.test\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 200") || !closed || strings.Count(resp, "x") >= 1<<20 {
		t.Errorf("large body cut short: %d bytes (closed %v), want a short 200 and a close", len(resp), closed)
	}
	for _, target := range []string{"/small", "/large"} {
		if l := lp.audit.Lines(`"target":"`+target+`"`, `"error"`); len(l) != 1 {
			t.Errorf("%s: want one audit line with the error:\n%s", target, lp.audit.String())
		}
	}
}

// TestFastPathConnectionClose: a request that says Connection: close is
// answered with Connection: close, and the connection then closes, with
// the request after it in the same write never served.
func TestFastPathConnectionClose(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	lp := e.startLimited("connclose", proxy.Limits{})
	resp, closed := rawExchange(t, lp.sock, "GET /last HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n"+
		"GET /never HTTP/1.1\r\nHost: echo.test\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.Contains(resp, "\r\nConnection: close\r\n") ||
		strings.Count(resp, "HTTP/1.1 ") != 1 || !closed {
		t.Errorf("answered %q (closed %v), want one 200 with Connection: close, then a close", resp, closed)
	}
	wantStats(t, lp, 1, 0)
}

// TestFastPathTransportRoutes: HTTP/1.1 requests to http2 and http3 routes
// are served by the fast path through the pool's own transport, reaching
// the upstream over HTTP/2 and HTTP/3, with no handoff to net/http; the
// response's trailers, if any, still reach the client (chunked).
func TestFastPathTransportRoutes(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	up := e.startEchoWith(echo.Options{HTTP3: true})
	lp := e.startLimited("fastrt", proxy.Limits{},
		route("h2up", proxy.ProtocolHTTP2, up.Addr()), route("h3up", proxy.ProtocolHTTP3, up.Addr()))
	hc := unixClient(lp.sock)
	for host, proto := range map[string]string{"h2up.test": "HTTP/2.0", "h3up.test": "HTTP/3.0"} {
		for i := 0; i < 3; i++ {
			res, err := hc.Get("http://" + host + "/rt")
			if err != nil {
				t.Fatalf("%s: %v", host, err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"proto":"`+proto+`"`) {
				t.Fatalf("%s: %d %s, want 200 over %s", host, res.StatusCode, b, proto)
			}
		}
	}
	wantStats(t, lp, 6, 0)
}

// wantStats fails the test unless lp's fast path served fast requests and
// handed off handoffs connections.
func wantStats(t *testing.T, lp *limProxy, fast, handoffs int64) {
	t.Helper()
	if st := lp.srv.Stats(); st.FastRequests != fast || st.Handoffs != handoffs {
		t.Errorf("%+v, want %d fast requests and %d handoffs", st, fast, handoffs)
	}
}
