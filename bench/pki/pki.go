// Package pki makes every certificate of a benchmark run from one CA:
// procmesh's own built-in CA (tlsconf.LoadOrCreateCA) in the run's state
// directory, which procmesh then loads as its identity.state_dir. Clients
// (HAProxy, nginx, Envoy, the direct-TLS load generator) get X509-SVIDs
// minted with tlsconf's Mint; the upstream gets an SVID from the same CA key
// that also carries a DNS name, because HAProxy and nginx check the
// upstream's host name against the SNI they send.
//
// It leaves out TLS configuration (packages upstream and peers do that).
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/tlsconf"
)

// Names every benchmark run uses.
const (
	TrustDomain  = "bench.test"
	UpstreamHost = "upstream.bench.test" // DNS SAN of the upstream, the SNI every client sends
	UpstreamID   = "spiffe://bench.test/upstream"
	InboundHost  = "inbound.bench.test" // DNS SAN of the inbound terminators' certificates, the SNI their client sends
)

// Files are the PEM files of one identity.
type Files struct {
	ID       string // SPIFFE ID
	Cert     string // leaf, then intermediates
	Key      string // PKCS#8
	CertKey  string // Cert then Key in one file (HAProxy's crt)
	Bundle   string // the trust bundle (CA certificate)
	CertPEM  []byte
	KeyPEM   []byte
	BundlePM []byte
}

// TLSCertificate returns the identity as a tls.Certificate.
func (f Files) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(f.CertPEM, f.KeyPEM)
}

// Roots returns the trust bundle as a pool.
func (f Files) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(f.BundlePM)
	return p
}

// PKI is the CA of one run and the directory its files go to.
type PKI struct {
	StateDir string // procmesh's identity.state_dir: ca.pem, ca.key
	Dir      string // certificates written for peers
	GID      int    // group that may read the files (the load generator's); -1 = unchanged
	ca       *tlsconf.CA
	bundle   []byte
}

// New loads or creates the CA under stateDir and writes its bundle to
// dir/ca.pem.
func New(stateDir, dir string, gid int) (*PKI, error) {
	td, err := spiffeid.TrustDomainFromString(TrustDomain)
	if err != nil {
		return nil, err
	}
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: td, StateDir: stateDir, SVIDTTL: 24 * time.Hour})
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	p := &PKI{StateDir: stateDir, Dir: dir, GID: gid, ca: ca, bundle: ca.BundlePEM()}
	if err := p.write("ca.pem", p.bundle, 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// BundleFile is the path of the CA bundle.
func (p *PKI) BundleFile() string { return filepath.Join(p.Dir, "ca.pem") }

// Client mints an X509-SVID spiffe://bench.test/<name> with procmesh's Mint
// and writes it as name.pem, name.key and name.crt+key.pem.
func (p *PKI) Client(name string) (Files, error) {
	id, err := spiffeid.FromSegments(p.ca.TrustDomain(), name)
	if err != nil {
		return Files{}, fmt.Errorf("pki: %w", err)
	}
	svid, err := p.ca.Mint(id)
	if err != nil {
		return Files{}, fmt.Errorf("pki: %w", err)
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return Files{}, fmt.Errorf("pki: %w", err)
	}
	return p.writeIdentity(name, id.String(), certPEM, keyPEM)
}

// Upstream issues the upstream's certificate from the same CA: an X509-SVID
// (one URI SAN, UpstreamID) with UpstreamHost as a DNS SAN as well.
func (p *PKI) Upstream() (Files, error) {
	return p.Server("upstream", UpstreamID, UpstreamHost)
}

// Server issues a server's certificate from the CA: an X509-SVID (one URI
// SAN, id) with dnsName as a DNS SAN as well, for servers that pick their
// certificate by SNI (Caddy). It is written as name.pem, name.key and
// name.crt+key.pem.
func (p *PKI) Server(name, id, dnsName string) (Files, error) {
	caCert, caKey, err := p.loadCAFiles()
	if err != nil {
		return Files{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, fmt.Errorf("pki: %w", err)
	}
	u, err := url.Parse(id)
	if err != nil {
		return Files{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return Files{}, fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"procmesh-bench"}},
		URIs:                  []*url.URL{u},
		DNSNames:              []string{dnsName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return Files{}, fmt.Errorf("pki: sign upstream certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Files{}, fmt.Errorf("pki: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return p.writeIdentity(name, id, certPEM, keyPEM)
}

// loadCAFiles reads the CA that tlsconf created under StateDir.
func (p *PKI) loadCAFiles() (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(filepath.Join(p.StateDir, "ca.pem"))
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(p.StateDir, "ca.key"))
	if err != nil {
		return nil, nil, fmt.Errorf("pki: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("pki: CA files in the state directory are not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("pki: CA key is a %T", k)
	}
	return cert, signer, nil
}

func (p *PKI) writeIdentity(name, id string, certPEM, keyPEM []byte) (Files, error) {
	f := Files{
		ID:       id,
		Cert:     filepath.Join(p.Dir, name+".pem"),
		Key:      filepath.Join(p.Dir, name+".key"),
		CertKey:  filepath.Join(p.Dir, name+".crt+key.pem"),
		Bundle:   p.BundleFile(),
		CertPEM:  certPEM,
		KeyPEM:   keyPEM,
		BundlePM: p.bundle,
	}
	both := append(append([]byte(nil), certPEM...), keyPEM...)
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.Cert, certPEM, 0o644}, {f.Key, keyPEM, 0o640}, {f.CertKey, both, 0o640}} {
		if err := p.write(filepath.Base(w.path), w.data, w.mode); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

func (p *PKI) write(name string, data []byte, mode os.FileMode) error {
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if p.GID >= 0 {
		if err := os.Chown(path, -1, p.GID); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	return nil
}
