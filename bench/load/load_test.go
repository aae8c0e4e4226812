package load

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/bench/upstream"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		keep    bool
		status  int // 0: success
		wantErr bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, 0, false},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n", true, 0, false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, 0, false},
		{"until EOF", "HTTP/1.0 200 OK\r\n\r\nall of it", false, 0, false},
		{"status 403 is an error after the body", "HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n", true, 403, false},
		{"garbage", "SSH-2.0-OpenSSH\r\n", false, 0, true},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.in))
			keep, err := ReadResponse(br)
			var se *ErrStatus
			switch {
			case tt.wantErr:
				if err == nil || errors.As(err, &se) {
					t.Fatalf("ReadResponse = %v, want a transport error", err)
				}
			case tt.status != 0:
				if !errors.As(err, &se) || se.Code != tt.status {
					t.Fatalf("ReadResponse = %v, want status %d", err, tt.status)
				}
			case err != nil:
				t.Fatalf("ReadResponse: %v", err)
			}
			if !tt.wantErr && keep != tt.keep {
				t.Errorf("keep = %v, want %v", keep, tt.keep)
			}
		})
	}
}

func TestBulkWindow(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acks := [][]ack{
		{{at(10), 1 << 20}, {at(100), 2 << 20}, {at(200), 4 << 20}, {at(300), 6 << 20}},
		{{at(150), 3 << 20}, {at(350), 5 << 20}},
	}
	r, err := bulkWindow(acks, at(100))
	if err != nil {
		t.Fatal(err)
	}
	// Stream 1: 2→6 MiB from 100 ms to 300 ms; stream 2: 3→5 MiB to 350 ms.
	if r.Bytes != 6<<20 || r.Elapsed != 250*time.Millisecond {
		t.Errorf("bulkWindow = %d bytes over %v, want %d over 250ms", r.Bytes, r.Elapsed, 6<<20)
	}
	if _, err := bulkWindow([][]ack{{{at(10), 1 << 20}}}, at(100)); err == nil {
		t.Error("a stream without acknowledgements after warm-up gave a figure")
	}
}

// startUpstream runs the real benchmark upstream on loopback with
// certificates from a fresh CA, and returns the direct client's TLS files.
func startUpstream(t *testing.T) (*upstream.Server, pki.Files) {
	t.Helper()
	dir := t.TempDir()
	p, err := pki.New(filepath.Join(dir, "state"), filepath.Join(dir, "certs"), -1)
	if err != nil {
		t.Fatal(err)
	}
	up, err := p.Upstream()
	if err != nil {
		t.Fatal(err)
	}
	client, err := p.Client("direct")
	if err != nil {
		t.Fatal(err)
	}
	s, err := upstream.Start(upstream.Options{
		Identity: upstream.Identity{CertFile: up.Cert, KeyFile: up.Key, BundleFile: up.Bundle, TrustDomain: pki.TrustDomain},
		H1:       "127.0.0.1:0", H2: "127.0.0.1:0", H3: "127.0.0.1:0", L4: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, client
}

// handshakes is how many handshakes the upstream has accepted.
func handshakes(s *upstream.Server) int {
	n := 0
	for _, h := range s.Stats.Snapshot() {
		n += h.Count
	}
	return n
}

// TestLoadAgainstUpstream drives every generator against the real upstream
// over loopback mTLS and checks that requests completed, bytes were
// acknowledged and the handshakes were the pinned ones.
func TestLoadAgainstUpstream(t *testing.T) {
	s, c := startUpstream(t)
	addrs := s.Addrs()
	ctx := context.Background()
	h1, err := DirectTLS(c.Cert, c.Key, c.Bundle, pki.UpstreamID, "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := DirectTLS(c.Cert, c.Key, c.Bundle, pki.UpstreamID)
	if err != nil {
		t.Fatal(err)
	}
	req := Request("echo.bench.test", "/1k")

	closed := RunClosed(ctx, Closed{Dial: TLSDialer(addrs.H1, h1), Request: req, Conns: 4, Duration: 200 * time.Millisecond})
	if closed.Requests == 0 || closed.Errors != 0 || closed.All < closed.Requests {
		t.Errorf("closed loop: %+v", closed)
	}

	// One request per connection: a full handshake for every request.
	before := handshakes(s)
	once := RunClosed(ctx, Closed{Dial: TLSDialer(addrs.H1, h1), Request: req, Conns: 2, Duration: 200 * time.Millisecond, NewConnPerRequest: true})
	if once.Requests == 0 || once.Errors != 0 {
		t.Errorf("closed loop, new connection per request: %+v", once)
	}
	if n := handshakes(s) - before; n < int(once.All) {
		t.Errorf("closed loop, new connection per request: %d requests over %d handshakes; want one handshake each", once.All, n)
	}

	open := RunOpen(ctx, Open{Dial: TLSDialer(addrs.H1, h1), Request: req, Rate: 200, Conns: 2, Duration: 200 * time.Millisecond})
	if len(open.Latencies) == 0 || open.Errors != 0 || open.Due == 0 {
		t.Errorf("open loop: %d latencies of %d due, %d errors (%s)", len(open.Latencies), open.Due, open.Errors, open.FirstErr)
	}

	bulk, err := RunBulk(ctx, Bulk{Dial: TLSDialer(addrs.L4, raw), Streams: 2, Duration: 500 * time.Millisecond})
	if err != nil || bulk.Bytes <= 0 || bulk.Bytes%upstream.L4AckEvery != 0 {
		t.Errorf("bulk: %+v, %v; want whole MiBs acknowledged", bulk, err)
	}

	ttfb, err := ColdClient(ctx, TLSDialer(addrs.H1, h1), req)
	if err != nil || ttfb <= 0 {
		t.Errorf("cold client: %v, %v", ttfb, err)
	}

	// One request first on each multiplexed transport: its handshake can
	// take longer than the timed window on a loaded machine under -race.
	warm := func(rt http.RoundTripper) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+pki.UpstreamHost+"/1k", nil)
		res, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("first request: %v", err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	tr2 := H2Transport(addrs.H2, raw)
	warm(tr2)
	h2 := HTTPClosed{RoundTripper: tr2, URL: "https://" + pki.UpstreamHost + "/1k", Workers: 4, Duration: 200 * time.Millisecond}.Run(ctx)
	if h2.Requests == 0 || h2.Errors != 0 {
		t.Errorf("HTTP/2: %+v", h2)
	}
	tr3 := H3Transport(addrs.H3, raw)
	defer tr3.Close()
	warm(tr3)
	h3 := HTTPClosed{RoundTripper: tr3, URL: "https://" + pki.UpstreamHost + "/1k", Workers: 4, Duration: 200 * time.Millisecond}.Run(ctx)
	if h3.Requests == 0 || h3.Errors != 0 {
		t.Errorf("HTTP/3: %+v", h3)
	}

	seen := map[string]bool{}
	for _, h := range s.Stats.Snapshot() {
		if h.Client != "spiffe://bench.test/direct" || h.Version != "TLS 1.3" || h.Cipher != "TLS_AES_128_GCM_SHA256" || h.Group != "X25519" || h.Offered != "X25519" {
			t.Errorf("handshake not pinned: %+v", h)
		}
		seen[h.Transport+"/"+h.ALPN] = true
	}
	for _, want := range []string{"tcp/http/1.1", "tcp/h2", "tcp/", "quic/h3"} {
		if !seen[want] {
			t.Errorf("no %s handshake counted; saw %v", want, seen)
		}
	}
}

func TestUpstreamRefusesClientsWithoutCertificate(t *testing.T) {
	s, c := startUpstream(t)
	cfg, err := DirectTLS(c.Cert, c.Key, c.Bundle, pki.UpstreamID, "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	cfg.GetClientCertificate = nil
	conn, err := TLSDialer(s.Addrs().H1, cfg)(context.Background())
	if err == nil {
		// TLS 1.3: the client learns of the refusal on its first read.
		_, err = NewH1Conn(conn, Request("x", "/")).Do()
		conn.Close()
	}
	if err == nil {
		t.Fatal("the upstream answered a client without a certificate")
	}
}
