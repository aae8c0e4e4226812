package inbound_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// h1Conn is a caller's HTTP/1.1 connection over mTLS, spoken by hand.
type h1Conn struct {
	*tls.Conn
	br *bufio.Reader
}

func (e *env) dialH1(addr string) *h1Conn {
	e.t.Helper()
	c, err := tls.Dial("tcp", addr, e.clientTLS(e.svid(frontID), appID, "http/1.1"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &h1Conn{Conn: c, br: bufio.NewReader(c)}
}

// get sends GET path and returns the response's status and body.
func (c *h1Conn) get(t testing.TB, path string) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: orders\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// closedWithin reports whether the server closes c within d (EOF or a
// reset, not a timeout), and how long that took.
func closedWithin(t testing.TB, c net.Conn, r io.Reader, d time.Duration) (bool, time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, time.Since(start)
	}
	return true, time.Since(start)
}

// h2Conn is a caller's HTTP/2 connection over mTLS, spoken frame by
// frame: past the SETTINGS exchange, with the server's settings.
type h2Conn struct {
	*tls.Conn
	fr       *http2.Framer
	dec      *hpack.Decoder // the connection's: its table lives across frames
	settings map[http2.SettingID]uint32
}

func (e *env) dialH2(addr string) *h2Conn {
	e.t.Helper()
	c, err := tls.Dial("tcp", addr, e.clientTLS(e.svid(frontID), appID, "h2"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	h := &h2Conn{Conn: c, fr: http2.NewFramer(c, c), dec: hpack.NewDecoder(4096, nil), settings: map[http2.SettingID]uint32{}}
	c.Write([]byte(http2.ClientPreface))
	h.fr.WriteSettings()
	f, err := h.fr.ReadFrame()
	if err != nil {
		e.t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		e.t.Fatalf("first frame %v, want SETTINGS", f)
	}
	sf.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
	h.fr.WriteSettingsAck()
	return h
}

// request opens stream id with a GET of path and extra header fields.
func (h *h2Conn) request(t testing.TB, id uint32, path string, extra ...hpack.HeaderField) {
	t.Helper()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range append([]hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "orders"}, {Name: ":path", Value: path}}, extra...) {
		enc.WriteField(f)
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// status reads frames until stream id gets its response headers or is
// reset; it returns the :status, or the reset's code.
func (h *h2Conn) status(t testing.TB, id uint32) (string, *http2.RSTStreamFrame) {
	t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			fields, err := h.dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			if f.StreamID != id {
				continue
			}
			for _, hf := range fields {
				if hf.Name == ":status" {
					return hf.Value, nil
				}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "", f
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY (%v) while waiting for stream %d", f.ErrCode, id)
		}
	}
}

// TestThreat_N4_HeaderBytes: limits.max_request_header_bytes bounds an
// inbound request's header section on HTTP/1.1 and HTTP/2: over it the
// caller gets 431 naming the key and nothing reaches the service; and
// procmesh stops reading an HTTP/1.1 header section that goes on past it
// (the 431 comes before the header section ends).
func TestThreat_N4_HeaderBytes(t *testing.T) {
	e := newEnv(t, proxy.Limits{MaxRequestHeaderBytes: 2048})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
	big := strings.Repeat("x", 2100)

	t.Run("http1", func(t *testing.T) {
		// 2,100 bytes: over the limit, under net/http's own bound (the
		// limit plus 4 KiB), so procmesh's check is what answers.
		c := e.dialH1(e.addr("orders"))
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: orders\r\nX-Big: "+big+"\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(string(b), "limits.max_request_header_bytes") {
			t.Fatalf("a 2,100-byte header field over limits.max_request_header_bytes 2048: %s %q", resp.Status, b)
		}
		// Under the limit, a request is served.
		if st, _ := e.dialH1(e.addr("orders")).get(t, "/small"); st != 200 {
			t.Fatalf("a small request: status %d", st)
		}
	})
	t.Run("http1 never ending", func(t *testing.T) {
		// A header section that goes on: the answer comes while the
		// caller is still sending it.
		c := e.dialH1(e.addr("orders"))
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /endless HTTP/1.1\r\nHost: orders\r\nX-Big: "+strings.Repeat("x", 8<<10))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("8 KiB of an unfinished header section over a 2 KiB limit: no answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("8 KiB of an unfinished header section: %s, want 431", resp.Status)
		}
	})
	t.Run("http2", func(t *testing.T) {
		// Frame by frame: Go's client refuses to send more than the
		// server's MAX_HEADER_LIST_SIZE, which net/http pads above the
		// limit; these fields are within it, over procmesh's count.
		h := e.dialH2(e.addr("orders"))
		h.request(t, 1, "/big", hpack.HeaderField{Name: "x-big", Value: big})
		if st, rst := h.status(t, 1); st != "431" {
			t.Fatalf("h2: a 2,100-byte header field: status %q, reset %v; want 431", st, rst)
		}
		h.request(t, 3, "/small")
		if st, rst := h.status(t, 3); st != "200" {
			t.Fatalf("h2: a small request: status %q, reset %v", st, rst)
		}
	})
	e.auditLines(`"limit":"limits.max_request_headers / limits.max_request_header_bytes"`, `"peer_id":"spiffe://example.org/frontend"`, `"status":431`)
	for _, l := range a.out.Lines("request") {
		if !strings.Contains(l, "/small") {
			t.Fatalf("a request over the limit reached the service: %q", l)
		}
	}
}

// TestThreat_N4_Timeouts: limits.idle_timeout closes an inbound
// connection with no request in flight (HTTP/1.1 keep-alive, HTTP/2),
// limits.header_read_timeout one whose request head does not end (a
// slowloris after the handshake), and limits.request_timeout and
// limits.stream_idle_timeout end a request the service is slow to answer
// with 504.
func TestThreat_N4_Timeouts(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		e := newEnv(t, proxy.Limits{IdleTimeout: 500 * time.Millisecond})
		a := startApp(t, bins.app, "http")
		e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))

		t.Run("http1", func(t *testing.T) {
			c := e.dialH1(e.addr("orders"))
			if st, _ := c.get(t, "/"); st != 200 {
				t.Fatalf("status %d", st)
			}
			if closed, after := closedWithin(t, c, c.br, 5*time.Second); !closed {
				t.Fatalf("a keep-alive connection idle for %v is still open over limits.idle_timeout 500ms", after)
			}
		})
		t.Run("http2", func(t *testing.T) {
			h := e.dialH2(e.addr("orders"))
			h.request(t, 1, "/")
			if st, rst := h.status(t, 1); st != "200" {
				t.Fatalf("status %q, reset %v", st, rst)
			}
			h.SetReadDeadline(time.Now().Add(5 * time.Second))
			var goaway bool
			for {
				f, err := h.fr.ReadFrame()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatal("a connection with no open stream is still open 5s later, over limits.idle_timeout 500ms")
					}
					break
				}
				if _, ok := f.(*http2.GoAwayFrame); ok {
					goaway = true
				}
			}
			if !goaway {
				t.Fatal("the idle connection ended without a GOAWAY")
			}
		})
	})
	t.Run("header read", func(t *testing.T) {
		e := newEnv(t, proxy.Limits{ReadHeaderTimeout: 500 * time.Millisecond, IdleTimeout: time.Minute})
		a := startApp(t, bins.app, "http")
		e.apply(e.listener("orders", a.sock, "http1", policy.Rule{From: []spiffeid.ID{frontID}}))
		c := e.dialH1(e.addr("orders"))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: orders\r\n") // and never the blank line
		if closed, after := closedWithin(t, c, c.br, 5*time.Second); !closed {
			t.Fatalf("a request head unfinished for %v is still being read, over limits.header_read_timeout 500ms", after)
		}
		if got := a.out.Lines("request"); len(got) != 0 {
			t.Fatalf("an unfinished request reached the service: %q", got)
		}
	})
	for _, tc := range []struct {
		key string
		lim proxy.Limits
	}{
		{"limits.request_timeout", proxy.Limits{RequestTimeout: time.Second}},
		{"limits.stream_idle_timeout", proxy.Limits{StreamIdleTimeout: time.Second}},
	} {
		t.Run(tc.key, func(t *testing.T) {
			e := newEnv(t, tc.lim)
			a := startApp(t, bins.app, "http")
			e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
			for _, h2 := range []bool{false, true} {
				start := time.Now()
				resp, err := e.httpClient(e.svid(frontID), h2).Get("https://" + e.addr("orders") + "/slow") // the app answers after 3s
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(b), tc.key) {
					t.Fatalf("h2=%v: a service answering after 3s under %s 1s: %s %q after %v", h2, tc.key, resp.Status, b, time.Since(start))
				}
			}
			e.auditLines(`"limit":"`+tc.key+`"`, `"peer_id":"spiffe://example.org/frontend"`, `"status":504`)
		})
	}
}

// TestThreat_N4_ConcurrentStreams: limits.max_concurrent_streams bounds the
// open streams of an inbound HTTP/2 connection: the server announces it,
// and a stream over it is reset without reaching the service.
func TestThreat_N4_ConcurrentStreams(t *testing.T) {
	e := newEnv(t, proxy.Limits{MaxConcurrentStreams: 2})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
	h := e.dialH2(e.addr("orders"))
	if got := h.settings[http2.SettingMaxConcurrentStreams]; got != 2 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 2 (limits.max_concurrent_streams)", got)
	}
	// Wait for our SETTINGS to be acknowledged: a stream over the limit
	// is then the client's error, not a race.
	for acked := false; !acked; {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() {
			acked = true
		}
	}
	h.request(t, 1, "/slow") // the app answers after 3s
	h.request(t, 3, "/slow")
	waitFor(t, func() bool { return len(a.out.Lines("request GET /slow")) == 2 })
	h.request(t, 5, "/slow")
	st, rst := h.status(t, 5)
	if rst == nil {
		t.Fatalf("a third concurrent stream over limits.max_concurrent_streams 2 was answered %s", st)
	}
	if rst.ErrCode != http2.ErrCodeProtocol && rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("stream 5 reset with %v", rst.ErrCode)
	}
	if got := a.out.Lines("request GET /slow"); len(got) != 2 {
		t.Fatalf("the service got %d requests, want 2", len(got))
	}
}

// TestThreat_N4_MaxConnections: limits.max_connections bounds the inbound
// connections of all callers together: over it a connection is closed
// before its handshake, with an audit line naming its address; a closed
// connection frees its slot.
func TestThreat_N4_MaxConnections(t *testing.T) {
	e := newEnv(t, proxy.Limits{MaxConnections: 2})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http1", policy.Rule{From: []spiffeid.ID{frontID, adminID}}))
	// Two callers of different identities: the bound is not per identity.
	first := e.dialH1(e.addr("orders"))
	if st, _ := first.get(t, "/"); st != 200 {
		t.Fatalf("first connection: %d", st)
	}
	second, err := tls.Dial("tcp", e.addr("orders"), e.clientTLS(e.svid(adminID), appID, "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	sc := &h1Conn{Conn: second, br: bufio.NewReader(second)}
	if st, _ := sc.get(t, "/"); st != 200 {
		t.Fatalf("second connection: %d", st)
	}
	third, err := tls.Dial("tcp", e.addr("orders"), e.clientTLS(e.svid(frontID), appID, "http/1.1"))
	if err == nil {
		third.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(third, "GET / HTTP/1.1\r\nHost: orders\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(third), nil); err == nil {
			t.Fatalf("a third connection over limits.max_connections 2 was served: %s", resp.Status)
		}
		third.Close()
	}
	e.auditLines(`"event":"inbound_handshake"`, `"limit":"limits.max_connections"`, `"peer_addr":"127.0.0.1:`)
	// A connection that ends gives its slot back.
	first.Close()
	waitFor(t, func() bool {
		c, err := tls.Dial("tcp", e.addr("orders"), e.clientTLS(e.svid(frontID), appID, "http/1.1"))
		if err != nil {
			return false
		}
		defer c.Close()
		hc := &h1Conn{Conn: c, br: bufio.NewReader(c)}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: orders\r\n\r\n")
		resp, err := http.ReadResponse(hc.br, nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// TestThreat_N4_BodyBytes: limits.max_request_body_bytes bounds an inbound
// request body: one announced over it (Content-Length) is refused with 413
// before a byte of it is sent, and one that goes over it while streaming
// is cut and answered 413 (not 502: the caller is over the limit, the
// service did nothing wrong), audited with the key. A streamed body
// reaches the service up to the limit, as egress streams it.
func TestThreat_N4_BodyBytes(t *testing.T) {
	e := newEnv(t, proxy.Limits{MaxRequestBodyBytes: 1000})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))

	// Announced: only the head is sent; the answer must not wait for
	// the body.
	c := e.dialH1(e.addr("orders"))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /announced HTTP/1.1\r\nHost: orders\r\nContent-Length: 1000000\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("a request announcing 1,000,000 body bytes over limits.max_request_body_bytes 1000 got no answer before its body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("announced body over the limit: %s, want 413", resp.Status)
	}
	for _, h2 := range []bool{false, true} {
		cl := e.httpClient(e.svid(frontID), h2)
		// Streamed (no Content-Length): over the limit, then under it.
		for _, tc := range []struct {
			n    int
			want int
		}{{5000, http.StatusRequestEntityTooLarge}, {1000, http.StatusOK}} {
			body := io.MultiReader(strings.NewReader(strings.Repeat("x", tc.n))) // hides the length
			resp, err := cl.Post("https://"+e.addr("orders")+"/streamed", "text/plain", body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || tc.want == 413 && !strings.Contains(string(b), "limits.max_request_body_bytes") {
				t.Fatalf("h2=%v: a streamed body of %d bytes: %s %q, want %d", h2, tc.n, resp.Status, b, tc.want)
			}
		}
	}
	e.auditLines(`"target":"/streamed"`, `"limit":"limits.max_request_body_bytes"`, `"peer_id":"spiffe://example.org/frontend"`, `"status":413`)
	if got := a.out.Lines("request POST /announced"); len(got) != 0 {
		t.Fatalf("a request announcing a body over the limit reached the service: %q", got)
	}
}

// TestThreat_N4_ResponseHeaders: the service's response headers are
// bounded too (P8, either direction): more fields than
// limits.max_response_headers, or more bytes than
// limits.max_response_header_bytes, and the caller gets 502, not the
// response; over HTTP/1.1 and h2c to the service.
func TestThreat_N4_ResponseHeaders(t *testing.T) {
	e := newEnv(t, proxy.Limits{}) // 100 fields, 60 KiB
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("h1", a.sock, "http1", policy.Rule{From: []spiffeid.ID{frontID}}),
		e.listener("h2", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
	for _, name := range []string{"h1", "h2"} {
		for _, path := range []string{"/many-headers", "/big-headers"} {
			resp, err := e.httpClient(e.svid(frontID), false).Get("https://" + e.addr(name) + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-H-1") != "" || resp.Header.Get("X-Big") != "" {
				t.Fatalf("%s: GET %s: %s with %d header fields, want 502", name, path, resp.Status, len(resp.Header))
			}
		}
		e.auditLines(`"inbound":"`+name+`"`, `"target":"/many-headers"`, `"limit":"limits.max_response_headers"`, `"status":502`)
		e.auditLines(`"inbound":"`+name+`"`, `"target":"/big-headers"`, `"status":502`)
	}
}
