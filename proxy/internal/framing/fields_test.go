package framing

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseFields holds ParseFields to net/textproto: whatever field
// section it accepts, ReadMIMEHeader reads into the same map.
func FuzzParseFields(f *testing.F) {
	for _, s := range []string{
		"\r\n",
		"Host: a\r\n\r\n",
		"Host: a\r\nUser-Agent: x/1\r\nAccept: */*\r\n\r\n",
		"host:a\r\nx-a-b:  v \t\r\nX-A-B: w\r\n\r\n",
		"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
		"A:\r\n\r\n",
		"A b: c\r\n\r\n",
		" A: b\r\n\r\n",
		"A: b\r\n c\r\n\r\n",
		"A: b\n\r\n",
		"A: \x80\r\n\r\n",
		"A: b\rc\r\n\r\n",
		"_x: 1\r\n1a: 2\r\nx_y-Z: 3\r\n\r\n",
		"A: b\r\n\r\nextra",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := ParseFields(s, 100)
		if !ok {
			return
		}
		want, err := textproto.NewReader(bufio.NewReader(strings.NewReader(s))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("ParseFields accepted %q; ReadMIMEHeader: %v", s, err)
		}
		if !reflect.DeepEqual(h, http.Header(want)) {
			t.Fatalf("%q: ParseFields %q, ReadMIMEHeader %q", s, h, want)
		}
	})
}

func TestParseFieldsRefuses(t *testing.T) {
	for _, s := range []string{
		"",                             // no end
		"A: b\r\n",                     // no empty line
		"A: b\n\r\n",                   // bare LF
		"A: b\r\n c\r\n\r\n",           // obs-fold
		" A: b\r\n\r\n",                // leading blank
		"A : b\r\n\r\n",                // blank before the colon
		"A b: c\r\n\r\n",               // name not a token
		": b\r\n\r\n",                  // empty name
		"A\r\n\r\n",                    // no colon
		"A: \x00\r\n\r\n",              // control byte
		"A: \x80\r\n\r\n",              // obs-text
		"A: b\rc\r\n\r\n",              // bare CR
		"A: b\r\n\r\nmore",             // bytes after the head
		"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", // over maxFields (2)
	} {
		if h, ok := ParseFields(s, 2); ok {
			t.Errorf("ParseFields(%q) = %q, want refused", s, h)
		}
	}
}

// FuzzParseResponse holds ParseResponse to http.ReadResponse: every head
// it accepts, ReadResponse reads into the same response.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: application/octet-stream\r\nDate: Fri, 04 Dec 2026 18:00:00 GMT\r\n\r\n",
		"HTTP/1.1 404\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: x\r\nContent-Length: 5\r\nX: y\r\n\r\n",
		"HTTP/1.1  200 OK\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 101 Switching\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 018446744073709551616\r\n\r\n",
		"HTTP/1.1 200 \x7f\r\nContent-Length: 1\r\n\r\n",
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, head bool) {
		if !strings.HasSuffix(s, "\r\n\r\n") || strings.Index(s, "\r\n\r\n") != len(s)-4 {
			return
		}
		req := &http.Request{Method: http.MethodGet}
		if head {
			req.Method = http.MethodHead
		}
		res, ok := ParseResponse([]byte(s), strings.NewReader(""), req)
		if !ok {
			return
		}
		want, err := http.ReadResponse(bufio.NewReader(strings.NewReader(s)), req)
		if err != nil {
			t.Fatalf("ParseResponse accepted %q; http.ReadResponse: %v", s, err)
		}
		got := []any{res.Status, res.StatusCode, res.Proto, res.ProtoMajor, res.ProtoMinor, res.Header,
			res.ContentLength, res.Close, res.TransferEncoding, res.Trailer, res.Uncompressed}
		exp := []any{want.Status, want.StatusCode, want.Proto, want.ProtoMajor, want.ProtoMinor, want.Header,
			want.ContentLength, want.Close, want.TransferEncoding, want.Trailer, want.Uncompressed}
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("%q:\n ParseResponse     %+v\n http.ReadResponse %+v", s, got, exp)
		}
	})
}

// A body that ends before its Content-Length is io.ErrUnexpectedEOF,
// never a clean end: a response cut short must not pass for complete.
func TestLengthBodyCutShort(t *testing.T) {
	res, ok := ParseResponse([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), strings.NewReader("abc"), &http.Request{Method: "GET"})
	if !ok {
		t.Fatal("refused")
	}
	got, err := io.ReadAll(res.Body)
	if string(got) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read %q, %v; want \"abc\", io.ErrUnexpectedEOF", got, err)
	}
}
