package upstream

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/rs/zerolog"
)

// TestUpstreamTLSCurves: Options.TLSCurves is what every upstream
// handshake offers, whatever the protocol: with [P-256] the upstream (Go's
// defaults, which prefer X25519MLKEM768 and X25519) can only agree on
// P-256; without it Go's default list applies and the hybrid wins.
func TestUpstreamTLSCurves(t *testing.T) {
	pe := newPoolsEnv(t)
	for _, tt := range []struct {
		name   string
		curves []tls.CurveID
		want   tls.CurveID
	}{
		{"P-256 only", []tls.CurveID{tls.CurveP256}, tls.CurveP256},
		{"Go's default", nil, tls.X25519MLKEM768},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := NewPools(pe.ps.src, Options{TLSCurves: tt.curves}, zerolog.Nop())
			defer ps.CloseAll()
			for _, proto := range []string{ProtocolHTTP1, ProtocolHTTP2, ProtocolHTTP3, ProtocolAuto} {
				req := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "https", Host: "echo.test", Path: "/curves"}, Header: http.Header{}, Host: "echo.test"}
				resp, err := ps.Get(pe.w, pe.route(proto)).Transport().RoundTrip(req)
				if err != nil {
					t.Fatalf("%s: %v", proto, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.TLS == nil || resp.TLS.CurveID != tt.want {
					t.Errorf("%s: negotiated %v, want %v", proto, curveOf(resp.TLS), tt.want)
				}
			}
			// Tunnels and raw sockets dial TLS themselves.
			c, err := ps.Get(pe.w, pe.route(ProtocolTCP)).DialTLS(context.Background())
			if err != nil {
				t.Fatalf("tunnel: %v", err)
			}
			defer c.Close()
			if got := c.ConnectionState().CurveID; got != tt.want {
				t.Errorf("tunnel: negotiated %v, want %v", got, tt.want)
			}
		})
	}
}

func curveOf(cs *tls.ConnectionState) any {
	if cs == nil {
		return "no TLS state"
	}
	return cs.CurveID
}
