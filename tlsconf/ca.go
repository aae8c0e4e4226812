package tlsconf

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultSVIDTTL is the lifetime of a minted SVID when CAOptions.SVIDTTL is 0.
const DefaultSVIDTTL = time.Hour

// CAOptions configures the builtin issuer. Exactly one of StateDir or the
// CertFile/KeyFile pair is used; CertFile/KeyFile win when set.
type CAOptions struct {
	// TrustDomain is the trust domain every minted SVID belongs to. Required.
	TrustDomain spiffeid.TrustDomain
	// StateDir holds a generated ECDSA P-256 self-signed root: ca.pem (0644)
	// and ca.key (0600, PKCS#8). Created with mode 0700 at first start and
	// reused on later starts. A key file open to group or others, or a
	// directory writable by group or others, is refused.
	StateDir string
	// CertFile and KeyFile name an operator CA instead, typically an
	// intermediate under an organisation root. CertFile holds the CA
	// certificate first, then its parents (the root may be included);
	// KeyFile holds its key as PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) PEM, with
	// no group or other permission bits.
	CertFile, KeyFile string
	// SVIDTTL is the lifetime of minted SVIDs, capped at the CA's NotAfter.
	// Default DefaultSVIDTTL (1h).
	SVIDTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Keys, when set, supplies the keys of minted SVIDs, generated ahead of
	// time. The caller owns it and closes it once the CA mints no more.
	// Default nil: each Mint generates its key.
	Keys *KeyPool
	// Logger receives CA lifecycle events. Default: no logging.
	Logger zerolog.Logger
}

// CA is the builtin issuer: it signs X509-SVIDs for one trust domain.
// It is safe for concurrent use.
type CA struct {
	td     spiffeid.TrustDomain
	cert   *x509.Certificate   // the signing CA
	chain  []*x509.Certificate // appended to every SVID: cert and its parents, no self-signed root
	signer crypto.Signer
	bundle *x509bundle.Bundle // trust anchors of td
	keys   *KeyPool           // nil: generate per Mint
	ttl    time.Duration
	now    func() time.Time
}

// LoadOrCreateCA loads the operator CA named by CertFile/KeyFile, or loads
// the CA under StateDir, generating it at first start.
//
// The trust bundle of the CA's own trust domain is the self-signed
// certificates found in CertFile if any (the organisation root), otherwise
// the CA certificate itself. When CertFile holds a root, the CA certificate
// must chain to it.
func LoadOrCreateCA(opts CAOptions) (*CA, error) {
	if opts.TrustDomain.IsZero() {
		return nil, errors.New("tlsconf: CA: trust domain is required")
	}
	if opts.SVIDTTL < 0 {
		return nil, fmt.Errorf("tlsconf: CA: SVID TTL %s is negative", opts.SVIDTTL)
	}
	if opts.SVIDTTL == 0 {
		opts.SVIDTTL = DefaultSVIDTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var certFile, keyFile string
	switch {
	case opts.CertFile != "" || opts.KeyFile != "":
		if opts.CertFile == "" || opts.KeyFile == "" {
			return nil, errors.New("tlsconf: CA: operator CA needs both a certificate file and a key file")
		}
		certFile, keyFile = opts.CertFile, opts.KeyFile
	case opts.StateDir != "":
		var err error
		if certFile, keyFile, err = ensureStateCA(opts); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("tlsconf: CA: set a state directory or an operator certificate and key file")
	}
	ca, err := loadCA(opts, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	opts.Logger.Info().Str("trust_domain", opts.TrustDomain.Name()).Str("cert_file", certFile).
		Time("not_after", ca.cert.NotAfter).Int("bundle_roots", len(ca.bundle.X509Authorities())).
		Msg("CA loaded")
	return ca, nil
}

func loadCA(opts CAOptions, certFile, keyFile string) (*CA, error) {
	keyPEM, err := readKeyFile(keyFile)
	if err != nil {
		return nil, err
	}
	signer, err := parseKeyPEM(keyPEM)
	clear(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA key %s: %w", keyFile, err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA certificate: %w", err)
	}
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA certificate %s: %w", certFile, err)
	}
	if err := checkCACert(certs[0], opts.TrustDomain, opts.Now()); err != nil {
		return nil, fmt.Errorf("tlsconf: CA certificate %s: %w", certFile, err)
	}
	if !publicKeyEqual(signer.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("tlsconf: CA key %s does not match the certificate in %s", keyFile, certFile)
	}
	var roots, chain []*x509.Certificate
	for _, c := range certs {
		if isSelfSigned(c) {
			roots = append(roots, c)
		} else {
			chain = append(chain, c)
		}
	}
	if len(roots) == 0 {
		roots = certs[:1]
	} else if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         pool(roots),
		Intermediates: pool(chain),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   opts.Now(),
	}); err != nil {
		return nil, fmt.Errorf("tlsconf: CA certificate %s does not chain to the root in the same file: %w", certFile, err)
	}
	return &CA{
		td:     opts.TrustDomain,
		cert:   certs[0],
		chain:  chain,
		signer: signer,
		bundle: x509bundle.FromX509Authorities(opts.TrustDomain, roots),
		keys:   opts.Keys,
		ttl:    opts.SVIDTTL,
		now:    opts.Now,
	}, nil
}

// checkCACert checks that cert may sign SVIDs of td at now.
func checkCACert(cert *x509.Certificate, td spiffeid.TrustDomain, now time.Time) error {
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return errors.New("first certificate is not a CA (basic constraints CA:TRUE missing)")
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return errors.New("first certificate lacks the keyCertSign key usage")
	case now.Before(cert.NotBefore):
		return fmt.Errorf("not valid before %s", cert.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(cert.NotAfter):
		return fmt.Errorf("expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := spiffeid.FromURI(u)
		if err != nil {
			return fmt.Errorf("URI SAN %q: %w", u, err)
		}
		if id.TrustDomain() != td {
			return fmt.Errorf("URI SAN %s is in trust domain %q, want %q", id, id.TrustDomain().Name(), td.Name())
		}
	}
	return nil
}

// TrustDomain returns the trust domain the CA issues for.
func (ca *CA) TrustDomain() spiffeid.TrustDomain { return ca.td }

// Bundle returns a copy of the trust anchors of the CA's trust domain.
func (ca *CA) Bundle() *x509bundle.Bundle { return ca.bundle.Clone() }

// BundlePEM returns the trust anchors of the CA's trust domain as PEM.
func (ca *CA) BundlePEM() []byte {
	var buf bytes.Buffer
	for _, c := range ca.bundle.X509Authorities() {
		// Writing to a bytes.Buffer cannot fail.
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
