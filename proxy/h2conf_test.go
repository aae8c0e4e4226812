package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/procmesh/procmesh/proxy"
)

// RFC 9113 MUSTs on the main socket's h2c, checked with a raw HTTP/2
// client (h2Raw, h2flood_test.go) against a real Server and echo upstream.

// h2Outcome is what the server did with one stream, or the connection.
type h2Outcome struct {
	status  string // :status of the response, if one came
	body    int    // response body bytes
	dataLen []int  // lengths of the DATA frames of the response
	rst     *http2.ErrCode
	goaway  *http2.ErrCode
	closed  bool // the connection ended
}

func (o h2Outcome) String() string {
	var parts []string
	if o.status != "" {
		parts = append(parts, fmt.Sprintf("status %s, %d body bytes", o.status, o.body))
	}
	if o.rst != nil {
		parts = append(parts, "RST_STREAM "+o.rst.String())
	}
	if o.goaway != nil {
		parts = append(parts, "GOAWAY "+o.goaway.String())
	}
	if o.closed {
		parts = append(parts, "connection closed")
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// decodeResponses makes the framer decode response header blocks; call
// it once after dialH2C.
func (h *h2Raw) decodeResponses() {
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
}

// outcome reads frames until stream ends, is reset, or the connection
// ends or goes quiet for d (then closed stays false).
func (h *h2Raw) outcome(stream uint32, d time.Duration) h2Outcome {
	var o h2Outcome
	h.conn.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			o.closed = !errors.As(err, &ne) || !ne.Timeout()
			return o
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			code := f.ErrCode
			o.goaway = &code
		case *http2.RSTStreamFrame:
			if f.StreamID == stream {
				code := f.ErrCode
				o.rst = &code
				return o
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				o.status = f.PseudoValue("status")
				if f.StreamEnded() {
					return o
				}
			}
		case *http2.DataFrame:
			if f.StreamID == stream {
				o.body += len(f.Data())
				o.dataLen = append(o.dataLen, len(f.Data()))
				if f.StreamEnded() {
					return o
				}
			}
		}
	}
}

// literal is an HPACK literal field without indexing: it changes no
// dynamic table, so a test can size and place it freely.
func literal(name, value string) []byte {
	b := appendHpackInt([]byte{0x00}, 7, uint64(len(name)))
	b = append(b, name...)
	b = appendHpackInt(b, 7, uint64(len(value)))
	return append(b, value...)
}

// appendHpackInt appends v as an HPACK integer with an n-bit prefix and
// no Huffman flag (RFC 7541 §5.1).
func appendHpackInt(b []byte, n uint, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(b, byte(v))
	}
	b = append(b, byte(max))
	for v -= max; v >= 128; v >>= 7 {
		b = append(b, byte(v%128+128))
	}
	return append(b, byte(v))
}

// TestThreat_P1_H2InvalidPreface: bytes that open the HTTP/2 preface but
// do not complete it end the connection with no answer (RFC 9113 §3.4);
// nothing after them is read as a request. net/http on its own serves
// "PRI * HTTP/2.0" with anything but "SM\r\n\r\n" after it as an HTTP/1.1
// request, which procmesh answered; so are a connection's first bytes that
// are neither HTTP/1.x nor the preface, which were answered 400.
func TestThreat_P1_H2InvalidPreface(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: echo.test\r\n\r\n"
	for _, c := range []struct{ name, bytes string }{
		{"request-after-line", "PRI * HTTP/2.0\r\n\r\n" + smuggled},
		{"last-byte-wrong", "PRI * HTTP/2.0\r\n\r\nSM\r\n\rQ" + smuggled},
		{"fields-in-preface", "PRI * HTTP/2.0\r\nHost: echo.test\r\n\r\nSM\r\n\r\n"},
		{"bare-lf", "PRI * HTTP/2.0\n\nSM\n\n" + smuggled},
		// Neither HTTP/1.x nor the preface (h2spec's case).
		{"not-http", "INVALID CONNECTION PREFACE\r\n\r\n" + smuggled},
		{"no-version", "GARBAGE\r\n\r\n" + smuggled},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, closed := rawExchange(t, e.sock, c.bytes, 5*time.Second)
			if resp != "" || !closed {
				t.Errorf("answer %q (closed %v), want the connection closed with no answer", resp, closed)
			}
		})
	}
	// After a request, a request line that is not HTTP is an HTTP/1.1
	// client's error, refused with 400 as such.
	resp, closed := rawExchange(t, e.sock, "GET /first HTTP/1.1\r\nHost: echo.test\r\n\r\nINVALID CONNECTION PREFACE\r\n\r\n"+smuggled, 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 200 ") || strings.Count(resp, "HTTP/1.1 ") != 2 || !strings.Contains(resp, "HTTP/1.1 400 ") || !closed {
		t.Errorf("answer %q (closed %v), want 200, then 400 and the connection closed", resp, closed)
	}
	for _, r := range e.echo.Records() {
		if r.Path != "/first" {
			t.Errorf("upstream saw %s %s", r.Method, r.Path)
		}
	}
}

// TestThreat_P5_H2FrameSize: procmesh advertises SETTINGS_MAX_FRAME_SIZE
// 16384, the protocol's initial value, so a larger frame is a connection
// error FRAME_SIZE_ERROR whether or not the client has seen procmesh's
// SETTINGS yet (RFC 9113 §4.2); a frame of exactly 16384 octets is served.
// Go's server on its own advertises 1 MiB, and served such a HEADERS frame.
// A header block the client never finishes is held to a bound (twice
// limits.max_request_header_bytes plus a frame), then the connection ends.
func TestThreat_P5_H2FrameSize(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	// A HEADERS payload of n octets: the request's fields, then padding in
	// a literal field.
	headers := func(h *h2Raw, path string, n int) []byte {
		blk := append(h.block("echo.test", path), literal("x-pad", "")...)
		pad := n - len(blk)
		blk = append(blk[:len(blk)-len(literal("x-pad", ""))], literal("x-pad", strings.Repeat("~", pad-2))...)
		if len(blk) != n {
			t.Fatalf("block of %d octets, want %d", len(blk), n)
		}
		return blk
	}

	h := dialH2C(t, e.sock)
	if got := h.serverSettings[http2.SettingMaxFrameSize]; got != 16384 {
		t.Errorf("SETTINGS_MAX_FRAME_SIZE %d, want 16384", got)
	}

	t.Run("headers-16385", func(t *testing.T) {
		h := dialH2C(t, e.sock)
		h.decodeResponses()
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers(h, "/too-large", 16385), EndStream: true, EndHeaders: true})
		o := h.outcome(1, 5*time.Second)
		if o.goaway == nil || *o.goaway != http2.ErrCodeFrameSize || !o.closed || o.status != "" {
			t.Errorf("got %v, want GOAWAY FRAME_SIZE_ERROR and the connection closed", o)
		}
	})
	t.Run("data-16385", func(t *testing.T) {
		h := dialH2C(t, e.sock)
		h.decodeResponses()
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.hpost("/too-large-data"), EndHeaders: true})
		h.fr.WriteData(1, true, make([]byte, 16385))
		o := h.outcome(1, 5*time.Second)
		if o.goaway == nil || *o.goaway != http2.ErrCodeFrameSize || !o.closed {
			t.Errorf("got %v, want GOAWAY FRAME_SIZE_ERROR and the connection closed", o)
		}
	})
	t.Run("exactly-16384", func(t *testing.T) {
		h := dialH2C(t, e.sock)
		h.decodeResponses()
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers(h, "/max-headers", 16384), EndStream: true, EndHeaders: true})
		if o := h.outcome(1, 5*time.Second); o.status != "200" {
			t.Errorf("HEADERS of 16384 octets: got %v, want 200", o)
		}
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: h.hpost("/max-data"), EndHeaders: true})
		h.fr.WriteData(3, true, bytes.Repeat([]byte("d"), 16384))
		if o := h.outcome(3, 5*time.Second); o.status != "200" {
			t.Errorf("DATA of 16384 octets: got %v, want 200", o)
		}
	})
	t.Run("unfinished-block", func(t *testing.T) {
		lp := e.startLimited("held", proxy.Limits{MaxRequestHeaderBytes: 4096})
		h := dialH2C(t, lp.sock)
		h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("echo.test", "/unfinished")})
		frames := 0
		chunk := literal("x-more", strings.Repeat("~", 8000))
		for ; frames < 100; frames++ {
			if h.fr.WriteContinuation(1, false, chunk) != nil {
				break
			}
		}
		o := h.outcome(1, 5*time.Second)
		if !o.closed || o.status != "" {
			t.Errorf("after %d CONTINUATION frames of 8 KiB: %v, want the connection closed", frames, o)
		}
		t.Logf("closed after %d frames of 8 KiB written", frames)
	})
	got := map[string]int{}
	for _, r := range e.echo.Records() {
		got[r.Path] = int(r.BodyLen)
	}
	if len(got) != 2 || got["/max-data"] != 16384 {
		t.Errorf("upstream saw %v, want /max-headers and /max-data with 16384 body bytes", got)
	}
}

// hpost encodes a request header block for POST http://echo.test/path.
func (h *h2Raw) hpost(path string) []byte { return h.req("POST", "echo.test", path) }

// req encodes a request header block for method http://host/path, with
// extra fields.
func (h *h2Raw) req(method, host, path string, extra ...hpack.HeaderField) []byte {
	h.hbuf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: host}, {Name: ":path", Value: path},
	}, extra...) {
		h.enc.WriteField(f)
	}
	return bytes.Clone(h.hbuf.Bytes())
}

// TestH2SettingsInOrder: a SETTINGS frame that sets a parameter more than
// once is processed in order and acknowledged (RFC 9113 §6.5.3); Go's
// server on its own closes the connection on duplicates. An invalid value
// among them is still refused with its own error code.
func TestH2SettingsInOrder(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()

	h := dialH2C(t, e.sock)
	h.decodeResponses()
	h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("echo.test", "/in-order"), EndStream: true, EndHeaders: true})
	o := h.outcome(1, time.Second) // the response stalls after one octet
	if o.status != "200" || len(o.dataLen) == 0 || o.dataLen[0] != 1 || o.goaway != nil || o.closed {
		t.Errorf("got %v with DATA frames %v, want 200 and DATA of 1 octet (window 1), the connection open", o, o.dataLen)
	}

	for _, c := range []struct {
		name     string
		settings []http2.Setting
		want     http2.ErrCode
	}{
		{"window-valid-then-invalid", []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1}, {ID: http2.SettingInitialWindowSize, Val: 1 << 31}}, http2.ErrCodeFlowControl},
		{"push-invalid-then-valid", []http2.Setting{{ID: http2.SettingEnablePush, Val: 2}, {ID: http2.SettingMaxFrameSize, Val: 20000}, {ID: http2.SettingEnablePush, Val: 0}}, http2.ErrCodeProtocol},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := dialH2C(t, e.sock)
			h.fr.WriteSettings(c.settings...)
			o := h.outcome(1, 5*time.Second)
			if o.goaway == nil || *o.goaway != c.want || !o.closed {
				t.Errorf("got %v, want GOAWAY %v", o, c.want)
			}
		})
	}
}

// TestThreat_P1_H2DowngradeMalformed: an HTTP/2 request with a
// connection-specific field or a TE other than "trailers" is malformed
// (RFC 9113 §8.2.2) and is reset with PROTOCOL_ERROR; nothing of it, and
// no request hidden in it, reaches the upstream, over an http1 route (the
// h2c-to-HTTP/1.1 downgrade of CVE-2021-33193 and PortSwigger's "HTTP/2:
// the sequel is always worse") or an http2 one. The connection lives on:
// a body the client still sends is discarded, and HPACK stays in step, so
// a valid request after the malformed ones is served.
//
// Go's server on its own answers such requests with a 400 response (the
// RFC asks for a stream error), and serves one with an empty TE.
func TestThreat_P1_H2DowngradeMalformed(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	e.withRoutes(e.srv, route("echo-h2", proxy.ProtocolHTTP2, e.echo.Addr()))
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: echo.test\r\n\r\n"
	f := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }
	cases := []struct {
		name   string
		fields []hpack.HeaderField
		body   string
	}{
		{"connection", []hpack.HeaderField{f("connection", "keep-alive")}, ""},
		{"connection-close", []hpack.HeaderField{f("connection", "close")}, "x"},
		{"keep-alive", []hpack.HeaderField{f("keep-alive", "timeout=5")}, ""},
		{"proxy-connection", []hpack.HeaderField{f("proxy-connection", "keep-alive")}, ""},
		{"transfer-encoding", []hpack.HeaderField{f("transfer-encoding", "chunked")}, "0\r\n\r\n" + smuggled},
		{"transfer-encoding-cl", []hpack.HeaderField{f("content-length", "5"), f("transfer-encoding", "chunked")}, "0\r\n\r\n" + smuggled},
		{"upgrade", []hpack.HeaderField{f("upgrade", "websocket")}, ""},
		{"te-gzip", []hpack.HeaderField{f("te", "gzip")}, ""},
		{"te-list", []hpack.HeaderField{f("te", "trailers, gzip")}, ""},
		{"te-empty", []hpack.HeaderField{f("te", "")}, ""},
		{"te-twice", []hpack.HeaderField{f("te", "trailers"), f("te", "trailers")}, ""},
	}
	for _, host := range []string{"echo.test", "echo-h2.test"} {
		t.Run(host, func(t *testing.T) {
			h := dialH2C(t, e.sock)
			h.decodeResponses()
			id := uint32(1)
			next := func() uint32 { id += 2; return id - 2 }
			wantReset := func(t *testing.T, stream uint32) {
				t.Helper()
				o := h.outcome(stream, 5*time.Second)
				if o.rst == nil || *o.rst != http2.ErrCodeProtocol || o.status != "" || o.goaway != nil || o.closed {
					t.Errorf("got %v, want RST_STREAM PROTOCOL_ERROR and the connection open", o)
				}
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					stream, path := next(), "/malformed-"+c.name
					method := "GET"
					if c.body != "" {
						method = "POST"
					}
					h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.req(method, host, path, c.fields...), EndStream: c.body == "", EndHeaders: true})
					if c.body != "" {
						h.fr.WriteData(stream, true, []byte(c.body))
					}
					wantReset(t, stream)
				})
			}
			t.Run("in-continuation", func(t *testing.T) {
				stream := next()
				h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.block(host, "/malformed-continuation"), EndStream: true})
				h.fr.WriteContinuation(stream, false, literal("x-a", "a"))
				h.fr.WriteContinuation(stream, true, literal("upgrade", "h2c"))
				wantReset(t, stream)
			})
			t.Run("full-frame", func(t *testing.T) {
				// The reset needs 5 octets more than the frame has room for.
				stream := next()
				blk := append(h.block(host, "/malformed-full-frame"), literal("transfer-encoding", "chunked")...)
				blk = append(blk, literal("x-pad", strings.Repeat("~", 16384-len(blk)-len(literal("x-pad", ""))-2))...)
				if len(blk) != 16384 {
					t.Fatalf("block of %d octets", len(blk))
				}
				h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: blk, EndStream: true, EndHeaders: true})
				wantReset(t, stream)
			})
			t.Run("trailers", func(t *testing.T) {
				stream := next()
				h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.req("POST", host, "/trailers", f("te", "trailers")), EndHeaders: true})
				h.fr.WriteData(stream, false, []byte("abc"))
				h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: append(literal("x-trailer", "t"), literal("upgrade", "h2c")...), EndStream: true, EndHeaders: true})
				wantReset(t, stream)
			})
			t.Run("valid-after", func(t *testing.T) {
				// Same fields again, now from the dynamic table, and TE: trailers.
				stream := next()
				h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: h.block(host, "/valid", f("te", "trailers"), f("connection-ish", "x")), EndStream: true, EndHeaders: true})
				if o := h.outcome(stream, 5*time.Second); o.status != "200" || o.goaway != nil {
					t.Errorf("got %v, want 200", o)
				}
			})
		})
	}
	valid := 0
	for _, r := range e.echo.Records() {
		switch {
		case r.Path == "/valid":
			valid++
		case r.Path == "/trailers":
			// Its head was well-formed: it may have started upstream
			// before its trailers were refused.
		default:
			t.Errorf("upstream saw %s %s (%s, %d body bytes)", r.Method, r.Path, r.Proto, r.BodyLen)
		}
	}
	if valid != 2 {
		t.Errorf("upstream saw /valid %d times, want once per route", valid)
	}
}
