package tlsconf

import (
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// clockSkew backdates NotBefore so that a peer whose clock runs up to 30
// seconds behind ours still accepts a certificate minted a moment ago.
const clockSkew = 30 * time.Second

// mintsLocally marks CA as a localIssuer: Mint is CPU work only.
func (*CA) mintsLocally() {}

// Mint issues a fresh X509-SVID for id, which must be in the CA's trust
// domain and have a path.
//
// The SVID follows the SPIFFE X509-SVID profile: a new ECDSA P-256 key
// (taken from CAOptions.Keys when set, never used for anything else), one
// URI SAN (the ID) and no DNS SAN, CA:FALSE, key usage digitalSignature,
// extended key usage serverAuth and clientAuth, a random 128-bit serial,
// NotBefore = now-30s and NotAfter = now+SVIDTTL, capped at the CA's
// NotAfter. Certificates holds the leaf, then the CA certificate and its
// parents when the CA is an intermediate; a self-signed root is never
// included (peers hold it in their bundle).
func (ca *CA) Mint(id spiffeid.ID) (*x509svid.SVID, error) {
	switch {
	case id.IsZero():
		return nil, errors.New("tlsconf: mint: empty SPIFFE ID")
	case !id.MemberOf(ca.td):
		return nil, fmt.Errorf("tlsconf: mint %s: not in trust domain %q", id, ca.td.Name())
	case id.Path() == "":
		return nil, fmt.Errorf("tlsconf: mint %s: an X509-SVID needs a path", id)
	}
	now := ca.now()
	notAfter := now.Add(ca.ttl)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("tlsconf: mint %s: CA certificate expired at %s", id, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-clockSkew)
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	key, err := ca.newKey()
	if err != nil {
		return nil, fmt.Errorf("tlsconf: mint %s: %w", id, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	leaf, err := ca.sign(&x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"procmesh"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, key.Public())
	if err != nil {
		return nil, fmt.Errorf("tlsconf: mint %s: %w", id, err)
	}
	certs := make([]*x509.Certificate, 0, 1+len(ca.chain))
	certs = append(certs, leaf)
	certs = append(certs, ca.chain...)
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}, nil
}

// newKey returns the new SVID's key: from the CA's KeyPool when it has one.
func (ca *CA) newKey() (*ecdsa.PrivateKey, error) {
	if ca.keys != nil {
		return ca.keys.Key()
	}
	return generateKey()
}
