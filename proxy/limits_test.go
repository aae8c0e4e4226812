package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/procmesh/procmesh/proxy"
)

// h2cClient is an in-process prior-knowledge HTTP/2 client of sock.
func h2cClient(sock string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// headerUpstream answers /fields/N with N extra header fields and
// /field-bytes/N with one field of N bytes.
func headerUpstream(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/fields/"); ok {
		n, _ := strconv.Atoi(rest)
		for i := range n {
			w.Header().Set(fmt.Sprintf("X-F%d", i), "v")
		}
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/field-bytes/"); ok {
		n, _ := strconv.Atoi(rest)
		w.Header().Set("X-Big", strings.Repeat("b", n))
	}
	io.WriteString(w, "ok")
}

// TestThreat_P8_OversizedHeaders: request headers over 60 KiB or over 100
// fields, on HTTP/1.1 and h2c, are answered 431 naming the limit's key
// (net/http alone would pass 100+ fields, and answer a bare 431 only past
// its byte limit); upstream responses over the limits are answered 502
// naming theirs. Headers under the limits pass.
func TestThreat_P8_OversizedHeaders(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	up := e.startUpstream(http.HandlerFunc(headerUpstream))
	e.srv.SetState(e.statePlus(upRoute("up", up)))
	fields := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-F%d: v\r\n", i)
		}
		return b.String()
	}

	for _, c := range []struct {
		name, extra, status, want string
	}{
		{"h1-70KiB", "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n", "431", "limits.max_request_header_bytes: 60KiB"},
		{"h1-1MiB", "X-Big: " + strings.Repeat("a", 1<<20) + "\r\n", "431", "limits.max_request_header_bytes: 60KiB"},
		{"h1-101-fields", fields(100), "431", "limits.max_request_headers: 100"},
		{"h1-50KiB", "X-Big: " + strings.Repeat("a", 50<<10) + "\r\n", "200", ""},
		{"h1-100-fields", fields(98), "200", ""}, // and Host, Connection
	} {
		t.Run(c.name, func(t *testing.T) {
			req := "GET /p8 HTTP/1.1\r\nHost: echo.test\r\n" + c.extra + "Connection: close\r\n\r\n"
			resp, closed := rawExchange(t, e.sock, req, 5*time.Second)
			if !strings.HasPrefix(resp, "HTTP/1.1 "+c.status) || !strings.Contains(resp, c.want) || !closed {
				t.Errorf("answer (closed %v) %.300q, want %s saying %q", closed, resp, c.status, c.want)
			}
		})
	}

	h2 := h2cClient(e.sock)
	for _, c := range []struct {
		name   string
		set    func(http.Header)
		status int
		want   string
	}{
		{"h2c-70KiB", func(h http.Header) { h.Set("X-Big", strings.Repeat("a", 70<<10)) }, 431, "limits.max_request_header_bytes: 60KiB"},
		{"h2c-101-fields", func(h http.Header) {
			for i := range 101 {
				h.Set(fmt.Sprintf("X-F%d", i), "v")
			}
		}, 431, "limits.max_request_headers: 100"},
		{"h2c-50KiB", func(h http.Header) { h.Set("X-Big", strings.Repeat("a", 50<<10)) }, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://echo.test/p8-h2", nil)
			c.set(req.Header)
			resp, err := h2.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || resp.ProtoMajor != 2 || !strings.Contains(string(b), c.want) {
				t.Errorf("%s %d %q, want HTTP/2 %d saying %q", resp.Proto, resp.StatusCode, b, c.status, c.want)
			}
		})
	}

	for _, c := range []struct {
		path, status, want string
	}{
		{"/fields/150", "502", "limits.max_response_headers: 100"},
		{"/field-bytes/70000", "502", "limits.max_response_header_bytes"},
		{"/fields/90", "200", ""},
		{"/field-bytes/30000", "200", ""},
	} {
		t.Run("response"+strings.ReplaceAll(c.path, "/", "-"), func(t *testing.T) {
			resp, _ := rawExchange(t, e.sock, "GET "+c.path+" HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n", 5*time.Second)
			if !strings.HasPrefix(resp, "HTTP/1.1 "+c.status) || !strings.Contains(resp, c.want) {
				t.Errorf("answer %.300q, want %s saying %q", resp, c.status, c.want)
			}
		})
	}
	for _, r := range e.echo.Records() {
		if len(r.Header) > 100 || len(fmt.Sprint(r.Header)) > 60<<10 {
			t.Errorf("an oversized request reached the upstream: %s %s", r.Proto, r.Path)
		}
	}
}

// TestRequestBodyLimit: with MaxRequestBodyBytes set, a body announced
// over it is refused 413 before the upstream hears of the request, and a
// chunked body that grows over it is cut and answered 413.
func TestRequestBodyLimit(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	up := e.startUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d", n)
	}))
	lp := e.startLimited("body", proxy.Limits{MaxRequestBodyBytes: 64 << 10}, upRoute("up", up))
	resp, closed := rawExchange(t, lp.sock, "POST /b HTTP/1.1\r\nHost: up.test\r\nContent-Length: 70000\r\n\r\n"+strings.Repeat("x", 70000), 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 413") || !strings.Contains(resp, "limits.max_request_body_bytes: 65536") || !closed {
		t.Errorf("announced body: (closed %v) %q", closed, resp)
	}
	if n := len(up.clientIDs()); n != 0 {
		t.Errorf("the upstream heard of %d requests with an announced body over the limit", n)
	}
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 40000, strings.Repeat("y", 40000))
	resp, closed = rawExchange(t, lp.sock, "POST /b HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk+chunk+"0\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 413") || !strings.Contains(resp, "limits.max_request_body_bytes: 65536") || !closed {
		t.Errorf("chunked body: (closed %v) %.300q", closed, resp)
	}
	resp, _ = rawExchange(t, lp.sock, "POST /b HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk+"0\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 200") || !strings.HasSuffix(resp, "read 40000") {
		t.Errorf("body under the limit: %q", resp)
	}
}

// TestMaxConcurrentStreams: an h2c client is told the limit in SETTINGS,
// and a stream opened beyond it, while the others are in flight, is
// refused; the upstream never has more requests of the connection at once.
func TestMaxConcurrentStreams(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	release := make(chan struct{})
	var inFlight atomicMax
	up := e.startUpstream(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.add(1)
		defer inFlight.add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	lp := e.startLimited("streams", proxy.Limits{MaxConcurrentStreams: 3}, upRoute("up", up))

	h := dialH2C(t, lp.sock)
	if got := h.serverSettings[http2.SettingMaxConcurrentStreams]; got != 3 {
		t.Fatalf("server advertised SETTINGS_MAX_CONCURRENT_STREAMS %d, want 3", got)
	}
	blk := h.block("up.test", "/hold")
	for id := uint32(1); id <= 7; id += 2 {
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("no RST_STREAM for the fourth stream: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.StreamID != 7 {
				t.Fatalf("stream %d reset (%v), want stream 7", rst.StreamID, rst.ErrCode)
			}
			break
		}
	}
	if !eventually(5*time.Second, func() bool { return inFlight.cur() == 3 }) {
		t.Fatalf("%d requests in flight, want 3", inFlight.cur())
	}
	close(release)
	if p := inFlight.peak(); p != 3 {
		t.Errorf("the upstream had %d requests of one connection at once, want 3", p)
	}
}

// readStatus reads one response off br and returns its status code.
func readStatus(t *testing.T, br *bufio.Reader) int {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
