package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ClientConfig builds the upstream mTLS client config with go-spiffe
// tlsconfig.MTLSClientConfig: it presents svid (asked again at every
// handshake, so a rotation is picked up), verifies the server's X509-SVID
// against bundles and lets auth decide on its SPIFFE ID. TLS 1.3 only.
//
// Each call gets its own ClientSessionCache. A resumed TLS 1.3 handshake
// sends no client certificate, the server attributes it to whoever made the
// original one, so callers must build one config per (identity, route) and
// never share the cache (I6).
func ClientConfig(svid x509svid.Source, bundles x509bundle.Source, auth tlsconfig.Authorizer, nextProtos ...string) *tls.Config {
	cfg := tlsconfig.MTLSClientConfig(svid, bundles, auth)
	cfg.MinVersion = tls.VersionTLS13
	cfg.MaxVersion = tls.VersionTLS13
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	if len(nextProtos) > 0 {
		cfg.NextProtos = append([]string(nil), nextProtos...)
	}
	return cfg
}

// AuthorizerFor returns the authorizer for an upstream route: exactly
// serverID when it is set (and, when td is also set, only if serverID is in
// td), otherwise any ID in td. With neither set, every server is refused:
// a route without a server identity fails closed.
func AuthorizerFor(serverID spiffeid.ID, td spiffeid.TrustDomain) tlsconfig.Authorizer {
	switch {
	case !serverID.IsZero() && !td.IsZero() && !serverID.MemberOf(td):
		err := fmt.Errorf("tlsconf: server ID %s is not in trust domain %q", serverID, td.Name())
		return refuseAll(err)
	case !serverID.IsZero():
		return tlsconfig.AuthorizeID(serverID)
	case !td.IsZero():
		return tlsconfig.AuthorizeMemberOf(td)
	default:
		return refuseAll(errors.New("tlsconf: no server SPIFFE ID or trust domain configured"))
	}
}

func refuseAll(err error) tlsconfig.Authorizer {
	return func(spiffeid.ID, [][]*x509.Certificate) error { return err }
}
