package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	tdExample  = spiffeid.RequireTrustDomainFromString("example.org")
	tdUpstream = spiffeid.RequireTrustDomainFromString("upstream.test")
	idBilling  = spiffeid.RequireFromString("spiffe://example.org/billing")
	idAnalyst  = spiffeid.RequireFromString("spiffe://example.org/analytics")
	idEcho     = spiffeid.RequireFromString("spiffe://upstream.test/echo")
)

// fakeClock is a settable clock shared by a CA and a Store under test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newStateCA generates a CA under a fresh state directory.
func newStateCA(t testing.TB, td spiffeid.TrustDomain, ttl time.Duration, now func() time.Time) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(CAOptions{TrustDomain: td, StateDir: filepath.Join(t.TempDir(), "state"), SVIDTTL: ttl, Now: now})
	if err != nil {
		t.Fatalf("LoadOrCreateCA: %v", err)
	}
	return ca
}

func mustMint(t testing.TB, ca *CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	s, err := ca.Mint(id)
	if err != nil {
		t.Fatalf("Mint(%s): %v", id, err)
	}
	return s
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// certTemplate is a CA certificate template valid for a day around now.
func caTemplate(cn string, uris ...string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"test org"}, CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			panic(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	return tmpl
}

// issue signs tmpl for pub with parent/parentKey, or self-signs with
// parentKey when parent is nil.
func issue(t testing.TB, tmpl, parent *x509.Certificate, parentKey crypto.Signer, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func pkcs8PEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// hsResult is the outcome of one TLS connection seen from both ends.
type hsResult struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// handshake runs one real TLS connection over 127.0.0.1 between serverCfg
// and clientCfg. The server writes one byte after its handshake and the
// client reads it, so a TLS 1.3 client learns whether the server accepted
// its certificate.
func handshake(t testing.TB, serverCfg, clientCfg *tls.Config) hsResult {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	type srvRes struct {
		err error
		cs  tls.ConnectionState
	}
	ch := make(chan srvRes, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- srvRes{err: err}
			return
		}
		defer func() { _ = c.Close() }()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			ch <- srvRes{err: err}
			return
		}
		_, err = tc.Write([]byte{'k'})
		ch <- srvRes{err: err, cs: tc.ConnectionState()}
	}()
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, clientCfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	clientErr := tc.Handshake()
	if clientErr == nil {
		var b [1]byte
		_, clientErr = io.ReadFull(tc, b[:])
	}
	cs := tc.ConnectionState()
	_ = tc.Close()
	sr := <-ch
	return hsResult{serverErr: sr.err, clientErr: clientErr, server: sr.cs, client: cs}
}
