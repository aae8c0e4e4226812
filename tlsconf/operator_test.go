package tlsconf

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// orgPKI is an organisation root and an intermediate for example.org.
type orgPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newOrgPKI(t *testing.T) orgPKI {
	t.Helper()
	rootKey, interKey := newKey(t), newKey(t)
	root := issue(t, caTemplate("Org Root CA"), nil, rootKey, rootKey.Public())
	inter := issue(t, caTemplate("procmesh node CA", "spiffe://example.org"), root, rootKey, interKey.Public())
	return orgPKI{root: root, inter: inter, rootKey: rootKey, interKey: interKey}
}

// upstream is a go-spiffe mTLS server in upstream.test that trusts only
// the example.org anchors it is given.
type upstream struct {
	svid    *x509svid.SVID
	bundles *x509bundle.Set // what clients need to verify it
}

func newUpstream(t *testing.T) upstream {
	t.Helper()
	ca := newStateCA(t, tdUpstream, time.Hour, nil)
	return upstream{svid: mustMint(t, ca, idEcho), bundles: x509bundle.NewSet(ca.Bundle())}
}

func (u upstream) serverConfig(trusted []*x509.Certificate, client spiffeid.ID) *tls.Config {
	return tlsconfig.MTLSServerConfig(u.svid, x509bundle.FromX509Authorities(tdExample, trusted), tlsconfig.AuthorizeID(client))
}

func TestLoadOrCreateCA_OperatorIntermediate(t *testing.T) {
	up := newUpstream(t)
	tests := []struct {
		name      string
		files     func(t *testing.T, p orgPKI) (certPEM, keyPEM []byte)
		wantChain int // certificates after the leaf
	}{
		{
			name: "intermediate then org root, PKCS#8 key",
			files: func(t *testing.T, p orgPKI) ([]byte, []byte) {
				return certsPEM(p.inter, p.root), pkcs8PEM(t, p.interKey)
			},
			wantChain: 1,
		},
		{
			name:      "intermediate alone",
			files:     func(t *testing.T, p orgPKI) ([]byte, []byte) { return certsPEM(p.inter), pkcs8PEM(t, p.interKey) },
			wantChain: 1,
		},
		{
			name: "SEC 1 EC key",
			files: func(t *testing.T, p orgPKI) ([]byte, []byte) {
				der, err := x509.MarshalECPrivateKey(p.interKey)
				if err != nil {
					t.Fatal(err)
				}
				return certsPEM(p.inter, p.root), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
			},
			wantChain: 1,
		},
		{
			name: "RSA intermediate, PKCS#1 key, no URI SAN",
			files: func(t *testing.T, p orgPKI) ([]byte, []byte) {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					t.Fatal(err)
				}
				inter := issue(t, caTemplate("rsa node CA"), p.root, p.rootKey, k.Public())
				return certsPEM(inter, p.root), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
			},
			wantChain: 1,
		},
		{
			name: "two intermediates",
			files: func(t *testing.T, p orgPKI) ([]byte, []byte) {
				k := newKey(t)
				inter2 := issue(t, caTemplate("node CA 2", "spiffe://example.org"), p.inter, p.interKey, k.Public())
				return certsPEM(inter2, p.inter, p.root), pkcs8PEM(t, k)
			},
			wantChain: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newOrgPKI(t)
			dir := t.TempDir()
			certPEM, keyPEM := tt.files(t, p)
			ca, err := LoadOrCreateCA(CAOptions{
				TrustDomain: tdExample,
				CertFile:    writeFile(t, filepath.Join(dir, "node-ca.pem"), certPEM, 0o644),
				KeyFile:     writeFile(t, filepath.Join(dir, "node-ca.key"), keyPEM, 0o600),
			})
			if err != nil {
				t.Fatalf("LoadOrCreateCA: %v", err)
			}
			svid := mustMint(t, ca, idBilling)
			if got := len(svid.Certificates) - 1; got != tt.wantChain {
				t.Errorf("SVID carries %d CA certificates, want %d", got, tt.wantChain)
			}
			for _, c := range svid.Certificates {
				if isSelfSigned(c) {
					t.Error("SVID chain includes the self-signed root")
				}
			}
			bundles, err := LoadBundles(ca.Bundle(), nil)
			if err != nil {
				t.Fatal(err)
			}
			bundles.Add(up.bundles.Bundles()[0])

			// The upstream trusts only the organisation root.
			res := handshake(t, up.serverConfig([]*x509.Certificate{p.root}, idBilling),
				ClientConfig(svid, bundles, tlsconfig.AuthorizeID(idEcho)))
			if res.serverErr != nil || res.clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
			}
			if got, _ := x509svid.IDFromCert(res.server.PeerCertificates[0]); got != idBilling {
				t.Errorf("upstream saw %s, want %s", got, idBilling)
			}

			// Control: the same leaf without its intermediates is refused,
			// so the handshake above really depended on the chain.
			bare := &x509svid.SVID{ID: svid.ID, Certificates: svid.Certificates[:1], PrivateKey: svid.PrivateKey}
			res = handshake(t, up.serverConfig([]*x509.Certificate{p.root}, idBilling),
				ClientConfig(bare, bundles, tlsconfig.AuthorizeID(idEcho)))
			if res.serverErr == nil {
				t.Error("upstream accepted a leaf without its intermediate")
			}
		})
	}
}

func TestLoadOrCreateCA_OperatorRefusals(t *testing.T) {
	p := newOrgPKI(t)
	otherKey := newKey(t)
	otherRoot := issue(t, caTemplate("Other Root"), nil, otherKey, otherKey.Public())
	leafTmpl := caTemplate("not a CA", "spiffe://example.org/node")
	leafTmpl.IsCA, leafTmpl.KeyUsage = false, x509.KeyUsageDigitalSignature
	noSignTmpl := caTemplate("no certsign", "spiffe://example.org")
	noSignTmpl.KeyUsage = x509.KeyUsageCRLSign
	expiredTmpl := caTemplate("expired", "spiffe://example.org")
	expiredTmpl.NotBefore, expiredTmpl.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	_, nonCanonicalErr := spiffeid.FromString("spiffe://Example.org")

	key := pkcs8PEM(t, p.interKey)
	tests := []struct {
		name     string
		certPEM  []byte
		keyPEM   []byte
		keyMode  os.FileMode
		want     string // %[1]s = cert file, %[2]s = key file
		wantPref bool   // want is a prefix (the rest comes from crypto/x509)
	}{
		{
			name: "key of another CA", certPEM: certsPEM(p.inter, p.root), keyPEM: pkcs8PEM(t, otherKey),
			want: "tlsconf: CA key %[2]s does not match the certificate in %[1]s",
		},
		{
			name: "leaf certificate", certPEM: certsPEM(issue(t, leafTmpl, p.root, p.rootKey, p.interKey.Public())), keyPEM: key,
			want: "tlsconf: CA certificate %[1]s: first certificate is not a CA (basic constraints CA:TRUE missing)",
		},
		{
			name: "CA without keyCertSign", certPEM: certsPEM(issue(t, noSignTmpl, p.root, p.rootKey, p.interKey.Public())), keyPEM: key,
			want: "tlsconf: CA certificate %[1]s: first certificate lacks the keyCertSign key usage",
		},
		{
			name: "CA of another trust domain", certPEM: certsPEM(issue(t, caTemplate("x", "spiffe://other.org"), p.root, p.rootKey, p.interKey.Public())), keyPEM: key,
			want: `tlsconf: CA certificate %[1]s: URI SAN spiffe://other.org is in trust domain "other.org", want "example.org"`,
		},
		{
			name: "non-canonical trust domain SAN", certPEM: certsPEM(issue(t, caTemplate("x", "spiffe://Example.org"), p.root, p.rootKey, p.interKey.Public())), keyPEM: key,
			want: `tlsconf: CA certificate %[1]s: URI SAN "spiffe://Example.org": ` + nonCanonicalErr.Error(),
		},
		{
			name: "expired CA", certPEM: certsPEM(issue(t, expiredTmpl, p.root, p.rootKey, p.interKey.Public())), keyPEM: key,
			want: "tlsconf: CA certificate %[1]s: expired at " + expiredTmpl.NotAfter.UTC().Truncate(time.Second).Format(time.RFC3339),
		},
		{
			name: "root in file is not the CA's root", certPEM: certsPEM(p.inter, otherRoot), keyPEM: key,
			want: "tlsconf: CA certificate %[1]s does not chain to the root in the same file: x509: ", wantPref: true,
		},
		{
			name: "encrypted key", certPEM: certsPEM(p.inter), keyPEM: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}),
			want: "tlsconf: CA key %[2]s: encrypted private keys are not supported; store the key decrypted with mode 0600",
		},
		{
			name: "no key in key file", certPEM: certsPEM(p.inter), keyPEM: certsPEM(p.inter),
			want: "tlsconf: CA key %[2]s: no PEM private key block found",
		},
		{
			name: "no certificate in cert file", certPEM: []byte("garbage\n"), keyPEM: key,
			want: "tlsconf: CA certificate %[1]s: no PEM CERTIFICATE block found",
		},
		{
			name: "key readable by others", certPEM: certsPEM(p.inter), keyPEM: key, keyMode: 0o644,
			want: "tlsconf: CA key %[2]s has mode 0644, open to group or others; run `chmod 600 %[2]s`",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.keyMode == 0 {
				tt.keyMode = 0o600
			}
			certFile := writeFile(t, filepath.Join(dir, "ca.pem"), tt.certPEM, 0o644)
			keyFile := writeFile(t, filepath.Join(dir, "ca.key"), tt.keyPEM, tt.keyMode)
			_, err := LoadOrCreateCA(CAOptions{TrustDomain: tdExample, CertFile: certFile, KeyFile: keyFile})
			want := fmt.Sprintf(tt.want, certFile, keyFile)
			switch {
			case err == nil:
				t.Fatalf("accepted; want error %q", want)
			case tt.wantPref && !strings.HasPrefix(err.Error(), want):
				t.Fatalf("error:\n got %v\nwant prefix %s", err, want)
			case !tt.wantPref && err.Error() != want:
				t.Fatalf("error:\n got %v\nwant %s", err, want)
			}
		})
	}
}
