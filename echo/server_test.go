package echo

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

func TestServer_Lifecycle(t *testing.T) {
	p := newPKI(t)
	if err := New(Options{}).Start(); err == nil || err.Error() != "echo: an SVID source is required" {
		t.Errorf("Start without SVID: %v", err)
	}
	opts := Options{SVID: mint(t, p.upstream, idEcho), Bundles: x509bundle.NewSet(p.clients.Bundle())}
	if err := New(Options{SVID: opts.SVID, Bundles: opts.Bundles, Mode: "udp"}).Start(); err == nil {
		t.Error("unknown mode accepted")
	}
	if err := New(opts).Close(); err != nil {
		t.Errorf("Close before Start: %v", err)
	}

	for _, mode := range []Mode{ModeHTTP, ModeTCP} {
		t.Run(string(mode), func(t *testing.T) {
			opts.Mode = mode
			s := New(opts)
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			if err := s.Start(); err == nil {
				t.Error("second Start accepted")
			}
			// An idle client connection stays open across Close: Close must
			// close it rather than wait for it.
			conn, err := tls.Dial("tcp", s.Addr(), p.clientConfig(t, idBilling, "http/1.1"))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			if mode == ModeHTTP {
				if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _ = s.Close(); _ = s.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return with a client connection open")
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(conn); err != nil && !errors.Is(err, io.EOF) && !isClosedErr(err) {
				t.Errorf("client connection after Close: %v", err)
			}
			if err := s.Start(); err == nil {
				t.Error("Start after Close accepted")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.Addr()); err == nil {
				_ = c.Close()
				t.Error("server still accepts connections after Close")
			}
		})
	}
}

func isClosedErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && !ne.Timeout() || strings.Contains(err.Error(), "connection reset")
}
