package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Dialer opens one client connection to a contestant.
type Dialer func(ctx context.Context) (net.Conn, error)

// UnixDialer connects to a proxy's Unix socket.
func UnixDialer(path string) Dialer {
	var d net.Dialer
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", path) }
}

// TLSDialer connects straight to the upstream over mTLS: the direct-TLS
// contestant, the ceiling a proxy approaches.
func TLSDialer(addr string, cfg *tls.Config) Dialer {
	d := &tls.Dialer{Config: cfg}
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

// DirectTLS is the direct client's mTLS config, built with go-spiffe like
// procmesh's: it presents the SVID in certFile/keyFile, verifies the
// upstream against bundleFile and accepts only serverID. TLS 1.3 and X25519
// only, as every contestant; no session cache, so every connection is a
// full handshake as a new process would make.
func DirectTLS(certFile, keyFile, bundleFile, serverID string, alpn ...string) (*tls.Config, error) {
	svid, err := x509svid.Load(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	id, err := spiffeid.FromString(serverID)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	bundle, err := x509bundle.Load(id.TrustDomain(), bundleFile)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	cfg := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(id))
	cfg.MinVersion = tls.VersionTLS13
	cfg.MaxVersion = tls.VersionTLS13
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	cfg.NextProtos = alpn
	return cfg, nil
}
