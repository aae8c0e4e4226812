package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseFastRequest holds parseFastRequest to what it replaces: every
// head it accepts, http.ReadRequest reads and net/http's server checks
// (serverChecks) pass, into the same request.
func FuzzParseFastRequest(f *testing.F) {
	for _, s := range []string{
		"GET /1k HTTP/1.1\r\nHost: echo.bench.test\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
		"POST /a?b=c HTTP/1.1\r\nHost: x:80\r\nContent-Length: 3\r\nConnection: keep-alive, close\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET //x/y?#f HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://x/ HTTP/1.1\r\nHost: y\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
		"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 01\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nPragma: no-cache\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		head := []byte(s)
		if headEnd(head) != len(head) {
			return
		}
		r, ok := parseFastRequest(head, bufio.NewReader(strings.NewReader("")), 100)
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("parseFastRequest accepted %q; http.ReadRequest: %v", s, err)
		}
		if !serverChecks(want, head) {
			t.Fatalf("parseFastRequest accepted %q; net/http's server refuses it", s)
		}
		got := []any{r.Method, r.RequestURI, *r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor, r.Header, r.Host,
			r.ContentLength, r.Close, r.TransferEncoding, r.Trailer}
		exp := []any{want.Method, want.RequestURI, *want.URL, want.Proto, want.ProtoMajor, want.ProtoMinor, want.Header, want.Host,
			want.ContentLength, want.Close, want.TransferEncoding, want.Trailer}
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("%q:\n parseFastRequest %+v\n http.ReadRequest %+v", s, got, exp)
		}
	})
}

// A body shorter than its Content-Length ends in io.ErrUnexpectedEOF, as
// net/http's does, and the bytes after it stay in the reader.
func TestParseFastRequestBody(t *testing.T) {
	head := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
	for _, tc := range []struct {
		body, want, rest string
		err              error
	}{
		{"hello", "hello", "", nil},
		{"helloGET", "hello", "GET", nil},
		{"hel", "hel", "", io.ErrUnexpectedEOF},
	} {
		br := bufio.NewReader(strings.NewReader(head + tc.body))
		b, _ := br.Peek(len(head))
		r, ok := parseFastRequest(b, br, 100)
		if !ok {
			t.Fatalf("refused %q", head)
		}
		br.Discard(len(head))
		got, err := io.ReadAll(r.Body)
		if string(got) != tc.want || !errors.Is(err, tc.err) && (err != nil || tc.err != nil) {
			t.Errorf("body %q: read %q, %v; want %q, %v", tc.body, got, err, tc.want, tc.err)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != tc.rest {
			t.Errorf("body %q: left %q, want %q", tc.body, rest, tc.rest)
		}
	}
}

var benchHead = []byte("GET /1k HTTP/1.1\r\nHost: echo.bench.test\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n")

func BenchmarkParseFastRequest(b *testing.B) {
	br := bufio.NewReader(strings.NewReader(""))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := parseFastRequest(benchHead, br, 100); !ok {
			b.Fatal("refused")
		}
	}
}

// BenchmarkReadRequestAndChecks is what parseFastRequest replaces.
func BenchmarkReadRequestAndChecks(b *testing.B) {
	rd := bytes.NewReader(benchHead)
	br := bufio.NewReader(rd)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(benchHead)
		br.Reset(rd)
		r, err := http.ReadRequest(br)
		if err != nil || !serverChecks(r, benchHead) {
			b.Fatal(err)
		}
	}
}
