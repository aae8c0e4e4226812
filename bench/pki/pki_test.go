package pki

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestOneCAForEveryCertificate(t *testing.T) {
	dir := t.TempDir()
	p, err := New(filepath.Join(dir, "state"), filepath.Join(dir, "certs"), -1)
	if err != nil {
		t.Fatal(err)
	}
	client, err := p.Client("haproxy")
	if err != nil {
		t.Fatal(err)
	}
	up, err := p.Upstream()
	if err != nil {
		t.Fatal(err)
	}
	roots := client.Roots()
	for _, f := range []Files{client, up} {
		certs, err := x509svid.Load(f.Cert, f.Key)
		if err != nil {
			t.Fatalf("%s is not an X509-SVID: %v", f.Cert, err)
		}
		if certs.ID.String() != f.ID {
			t.Errorf("%s has ID %s, want %s", f.Cert, certs.ID, f.ID)
		}
		if _, err := certs.Certificates[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not chain to the run's CA: %v", f.Cert, err)
		}
		if _, err := f.TLSCertificate(); err != nil {
			t.Errorf("%s: %v", f.Cert, err)
		}
	}
	leaf, _ := x509svid.Load(up.Cert, up.Key)
	if err := leaf.Certificates[0].VerifyHostname(UpstreamHost); err != nil {
		t.Errorf("upstream certificate does not name %s: %v", UpstreamHost, err)
	}
	// HAProxy's crt file: the certificate, then the key.
	b, err := os.ReadFile(client.CertKey)
	if err != nil {
		t.Fatal(err)
	}
	first, rest := pem.Decode(b)
	second, _ := pem.Decode(rest)
	if first == nil || second == nil || first.Type != "CERTIFICATE" || second.Type != "PRIVATE KEY" {
		t.Errorf("%s is not certificate+key PEM", client.CertKey)
	}
	// procmesh loads the same CA from the same state directory.
	if _, err := os.Stat(filepath.Join(dir, "state", "ca.key")); err != nil {
		t.Errorf("CA key not in the state directory: %v", err)
	}
}
