package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// svidTemplate is the leaf Mint builds, with a fixed serial.
func svidTemplate(t testing.TB) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(idBilling.String())
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber:          big.NewInt(0x5eed),
		Subject:               pkix.Name{Organization: []string{"procmesh"}},
		URIs:                  []*url.URL{u},
		NotBefore:             time.Now().Add(-time.Minute).Truncate(time.Second),
		NotAfter:              time.Now().Add(time.Hour).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
}

// TestSignECDSA_SameCertificateAsCreateCertificate: for CA keys on every
// curve, signECDSA produces the TBSCertificate x509.CreateCertificate
// produces for the same template, a signature that verifies under the CA's
// key, and an SVID go-spiffe verifies against the CA.
func TestSignECDSA_SameCertificateAsCreateCertificate(t *testing.T) {
	for _, tt := range []struct {
		curve elliptic.Curve
		alg   x509.SignatureAlgorithm
	}{
		{elliptic.P256(), x509.ECDSAWithSHA256},
		{elliptic.P384(), x509.ECDSAWithSHA384},
		{elliptic.P521(), x509.ECDSAWithSHA512},
	} {
		t.Run(tt.curve.Params().Name, func(t *testing.T) {
			caKey, err := ecdsa.GenerateKey(tt.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			caCert := issue(t, caTemplate("node CA", "spiffe://example.org"), nil, caKey, caKey.Public())
			leafKey := newKey(t)
			tmpl := svidTemplate(t)

			got, err := signECDSA(tmpl, caCert, leafKey.Public(), caKey)
			if err != nil {
				t.Fatalf("signECDSA: %v", err)
			}
			want := issue(t, tmpl, caCert, caKey, leafKey.Public())
			if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
				t.Errorf("TBSCertificate differs from x509.CreateCertificate's:\n got %x\nwant %x", got.RawTBSCertificate, want.RawTBSCertificate)
			}
			if got.SignatureAlgorithm != tt.alg {
				t.Errorf("signature algorithm %v, want %v", got.SignatureAlgorithm, tt.alg)
			}
			if err := got.CheckSignatureFrom(caCert); err != nil {
				t.Errorf("signature does not verify under the CA key: %v", err)
			}
			svid := &x509svid.SVID{ID: idBilling, Certificates: []*x509.Certificate{got}, PrivateKey: leafKey}
			certs, key, err := svid.MarshalRaw()
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := x509svid.ParseRaw(certs, key)
			if err != nil {
				t.Fatalf("x509svid.ParseRaw: %v", err)
			}
			bundle := x509bundle.FromX509Authorities(tdExample, []*x509.Certificate{caCert})
			if id, _, err := x509svid.Verify(parsed.Certificates, bundle); err != nil || id != idBilling {
				t.Errorf("x509svid.Verify: %s, %v", id, err)
			}
		})
	}
}

// TestSignECDSA_WrongParentRefused: the checks of x509.CreateCertificate
// still run: a CA key that does not match the parent certificate is an error.
func TestSignECDSA_WrongParentRefused(t *testing.T) {
	caKey, other := newKey(t), newKey(t)
	caCert := issue(t, caTemplate("node CA"), nil, caKey, caKey.Public())
	_, err := signECDSA(svidTemplate(t), caCert, newKey(t).Public(), other)
	if err == nil || !strings.Contains(err.Error(), "doesn't match parent's PublicKey") {
		t.Fatalf("err = %v, want CreateCertificate's key mismatch", err)
	}
}

// TestTBSSignatureAlgorithm reads the AlgorithmIdentifier of a real
// TBSCertificate and refuses what is not one.
func TestTBSSignatureAlgorithm(t *testing.T) {
	caKey := newKey(t)
	cert := issue(t, caTemplate("node CA"), nil, caKey, caKey.Public())
	alg, err := tbsSignatureAlgorithm(cert.RawTBSCertificate)
	if err != nil {
		t.Fatal(err)
	}
	// ecdsa-with-SHA256, 1.2.840.10045.4.3.2, with no parameters.
	if want := []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}; !bytes.Equal(alg, want) {
		t.Errorf("algorithm %x, want %x", alg, want)
	}
	for name, in := range map[string][]byte{
		"empty":          nil,
		"trailing bytes": append(append([]byte(nil), cert.RawTBSCertificate...), 0),
		"not a sequence": {0x02, 0x01, 0x01},
		"truncated":      cert.RawTBSCertificate[:20],
	} {
		if _, err := tbsSignatureAlgorithm(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
