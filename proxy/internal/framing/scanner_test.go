package framing

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"regexp"
	"testing"
)

// serverRequests reads stream as net/http's server does (ReadRequest, the
// whole body, the CR/LF it skips after a POST) and returns the request
// lines it read, and whether it stopped at a clean end of stream.
func serverRequests(stream []byte) (lines []string, cleanEOF bool) {
	br := bufio.NewReader(bytes.NewReader(stream))
	lastPOST := false
	for {
		if lastPOST {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			return lines, true
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return lines, false
		}
		lines = append(lines, req.Method+" "+req.RequestURI+" "+req.Proto)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return lines, false
		}
		lastPOST = req.Method == "POST"
	}
}

var markerRE = regexp.MustCompile(`/\.procmesh-refused/[0-9a-f]{32}`)

func scanAll(in []byte, step int, maxHead, maxFields int) (out []byte, Released []string, s *Scanner, err error) {
	s = NewScanner(maxHead, maxFields, testOver)
	s.Released = func(l string) { Released = append(Released, l) }
	for i := 0; i < len(in) && err == nil; i += step {
		out, err = s.Feed(in[i:min(i+step, len(in))], out)
	}
	return out, Released, s, err
}

// FuzzH1Scanner: the scanner frames a client's stream as net/http does.
// Whatever it releases, net/http reads the same requests, in the same
// order, and never one the scanner did not see (no desync, THREATS P1);
// how the stream is cut into reads changes nothing.
func FuzzH1Scanner(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n\r\nGET /2 HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n X: folded\n\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"CONNECT a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello",
		"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 01\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		out, Released, s, err := scanAll(in, int(step%32)+1, 512, 16)
		whole, released2, _, err2 := scanAll(in, len(in)+1, 512, 16)
		if !bytes.Equal(markerRE.ReplaceAll(out, nil), markerRE.ReplaceAll(whole, nil)) || (err == nil) != (err2 == nil) || len(Released) != len(released2) {
			t.Fatalf("reads of %d bytes and one read disagree:\n%q %v\n%q %v", step%32+1, out, err, whole, err2)
		}
		got, clean := serverRequests(out)
		for i := range min(len(got), len(Released)) {
			if got[i] != Released[i] {
				t.Fatalf("request %d: net/http read %q, the scanner Released %q\nstream %q", i, got[i], Released[i], out)
			}
		}
		if s.state == scanPass || s.state == scanH2 {
			return // net/http reads what follows as it will; so does the tunnel (h2check_test.go: HTTP/2)
		}
		if len(got) > len(Released) {
			t.Fatalf("net/http read %d requests, the scanner Released %d: %q\nstream %q", len(got), len(Released), got, out)
		}
		if clean && len(got) < len(Released) {
			t.Fatalf("net/http read %d requests to a clean end, the scanner Released %d: %q\nstream %q", len(got), len(Released), Released, out)
		}
	})
}

// TestH1ScannerHoldsHeads: nothing of a head reaches net/http before the
// head is judged, and a refused head never does.
func TestH1ScannerHoldsHeads(t *testing.T) {
	s := NewScanner(1024, 16, testOver)
	out, _ := s.Feed([]byte("POST / HTTP/1.1\r\nContent-Length: 1\r\n"), nil)
	if len(out) != 0 {
		t.Fatalf("Released %q of an incomplete head", out)
	}
	out, _ = s.Feed([]byte("Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), out)
	if bytes.Contains(out, []byte("Transfer-Encoding")) || !markerRE.Match(out) || s.refused.Status != http.StatusBadRequest {
		t.Fatalf("Released %q, refusal %+v", out, s.refused)
	}
	if more, _ := s.Feed([]byte("GET /next HTTP/1.1\r\n\r\n"), nil); len(more) != 0 {
		t.Fatalf("Released %q after a refusal", more)
	}
}

// BenchmarkH1Scanner: the scanner's cost on a keep-alive stream of
// requests with chunked and fixed-length bodies, fed in 4 KiB reads.
func BenchmarkH1Scanner(b *testing.B) {
	var stream []byte
	body := bytes.Repeat([]byte("x"), 1000)
	for range 50 {
		stream = append(stream, "POST /upload HTTP/1.1\r\nHost: echo.test\r\nUser-Agent: bench\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"...)
		stream = append(stream, body...)
		stream = append(stream, "\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1000\r\n\r\n"...)
		stream = append(stream, body...)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	out := make([]byte, 0, 8<<10)
	for b.Loop() {
		s := NewScanner(60<<10, 100, testOver)
		for i := 0; i < len(stream); i += 4 << 10 {
			var err error
			if out, err = s.Feed(stream[i:min(i+4<<10, len(stream))], out[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// testOver is what the proxy passes: the words of its header limits.
var testOver = OverLimit{HeadBytes: "request header section is over the limit", Fields: "too many header fields"}
