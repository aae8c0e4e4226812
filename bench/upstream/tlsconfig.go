package upstream

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Identity names the upstream's SVID files and the bundle that verifies
// clients.
type Identity struct {
	CertFile, KeyFile, BundleFile string
	TrustDomain                   string
}

// serverConfig builds the mTLS server config every listener starts from:
// go-spiffe verifies the client against the bundle and accepts any ID of the
// trust domain; TLS 1.3 only; X25519 only; handshakes counted in stats.
func serverConfig(id Identity, stats *Stats, transport string, nextProtos ...string) (*tls.Config, error) {
	svid, err := x509svid.Load(id.CertFile, id.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	td, err := spiffeid.TrustDomainFromString(id.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	bundle, err := x509bundle.Load(td, id.BundleFile)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	cfg := tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeMemberOf(td))
	cfg.MinVersion = tls.VersionTLS13
	cfg.MaxVersion = tls.VersionTLS13
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	cfg.NextProtos = nextProtos
	// Each handshake gets its own copy of the config so that the groups
	// the client offered (X25519MLKEM768 too, by Go's default) are
	// recorded next to the group that was negotiated.
	base := cfg.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		offered := groupNames(hello.SupportedCurves)
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			stats.record(transport, offered, cs)
			return nil
		}
		return c, nil
	}
	return cfg, nil
}

func groupNames(ids []tls.CurveID) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = id.String()
	}
	return strings.Join(names, ",")
}
