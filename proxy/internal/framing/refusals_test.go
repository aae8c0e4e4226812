package framing

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestScannerRefusals: every reason the scanner refuses a head for, and
// every chunked-body framing error, from one input each; the stand-in
// request replaces the head (its target is the refusal's marker), and
// nothing after a refused head is released.
func TestScannerRefusals(t *testing.T) {
	const spoke = "GET /first HTTP/1.1\r\n\r\n"
	for _, tt := range []struct {
		name   string
		in     string
		status int
		reason string
	}{
		{"head over the byte limit", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 600) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge, testOver.HeadBytes},
		{"too many fields", "GET / HTTP/1.1\r\n" + strings.Repeat("X: 1\r\n", 17) + "\r\n", http.StatusRequestHeaderFieldsTooLarge, testOver.Fields},
		{"obsolete line folding", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", http.StatusBadRequest, "obsolete line folding"},
		{"header line without colon", "GET / HTTP/1.1\r\nno colon here\r\n\r\n", http.StatusBadRequest, "malformed header line (no colon)"},
		// Before a connection's first good head, bytes that are not HTTP/1
		// are handed on as they are (an HTTP/2 preface is judged there).
		{"malformed request line", spoke + "GET /\r\n\r\n", http.StatusBadRequest, "malformed request line"},
		{"malformed version", spoke + "GET / HTTP/x.y\r\n\r\n", http.StatusBadRequest, "malformed HTTP version"},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request"},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", http.StatusBadRequest, "both Content-Length and Transfer-Encoding"},
		{"Transfer-Encoding not chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", http.StatusBadRequest, `Transfer-Encoding "gzip"`},
		{"two Transfer-Encodings", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", http.StatusBadRequest, "only a single \"chunked\""},
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", http.StatusBadRequest, "conflicting Content-Length values"},
		{"invalid Content-Length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", http.StatusBadRequest, `invalid Content-Length "-1"`},
		{"empty Content-Length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", http.StatusBadRequest, `invalid Content-Length ""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, released, s, err := scanAll([]byte(tt.in+"GET /after HTTP/1.1\r\n\r\n"), 3, 512, 16)
			if err != nil {
				t.Fatalf("Feed: %v", err)
			}
			r := s.Refused()
			if r == nil {
				t.Fatalf("not refused; out %q", out)
			}
			if r.Status != tt.status || !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("refused %d %q, want %d containing %q", r.Status, r.Reason, tt.status, tt.reason)
			}
			if !strings.Contains(string(out), r.Marker) {
				t.Errorf("the stand-in's target %q is not in the output %q", r.Marker, out)
			}
			if strings.Contains(string(out), "/after") || len(released) == 0 || !strings.Contains(released[len(released)-1], r.Marker) {
				t.Errorf("released %q after a refused head (out %q)", released, out)
			}
		})
	}
	for _, tt := range []struct{ name, body, want string }{
		{"chunk-size line with a bare LF", "5\nhello\r\n0\r\n\r\n", "bare LF"},
		{"CR inside a chunk-size line", "5\rx\r\nhello\r\n0\r\n\r\n", "CR inside a chunk-size line"},
		{"chunk-size line too long", "5;" + strings.Repeat("x", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n", "line longer than"},
		{"invalid chunk size", "zz\r\n", "invalid byte"},
		{"folded trailer line", "0\r\nT: 1\r\n folded\r\n\r\n", "folded trailer line"},
		{"trailer line without CRLF", "0\r\nT: 1\n\r\n", "trailer line not ended by CRLF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + tt.body
			_, _, _, err := scanAll([]byte(in), 2, 512, 16)
			if !errors.Is(err, ErrFraming) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Feed error %v, want ErrFraming containing %q", err, tt.want)
			}
		})
	}
}
