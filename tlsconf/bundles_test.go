package tlsconf

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestLoadBundles(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	own := ca.Bundle().X509Authorities()[0]
	dir := t.TempDir()
	key := newKey(t)
	orgRoot := issue(t, caTemplate("Org Root"), nil, key, key.Public())
	partnerRoot := issue(t, caTemplate("Partner Root"), nil, key, key.Public())
	leafTmpl := caTemplate("leaf")
	leafTmpl.IsCA, leafTmpl.KeyUsage = false, x509.KeyUsageDigitalSignature
	leaf := issue(t, leafTmpl, orgRoot, key, key.Public())

	orgFile := writeFile(t, filepath.Join(dir, "org.pem"), certsPEM(orgRoot), 0o644)
	partnerFile := writeFile(t, filepath.Join(dir, "partner.pem"), certsPEM(partnerRoot), 0o644)
	garbage := writeFile(t, filepath.Join(dir, "garbage.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	empty := writeFile(t, filepath.Join(dir, "empty.pem"), nil, 0o644)
	leafFile := writeFile(t, filepath.Join(dir, "leaf.pem"), certsPEM(leaf), 0o644)
	missing := filepath.Join(dir, "missing.pem")
	tdPartner := spiffeid.RequireTrustDomainFromString("partner.test")

	t.Run("merge and add", func(t *testing.T) {
		set, err := LoadBundles(ca.Bundle(), []BundleFile{
			{TrustDomain: tdExample, File: orgFile},
			{TrustDomain: tdPartner, File: partnerFile},
		})
		if err != nil {
			t.Fatal(err)
		}
		b, ok := set.Get(tdExample)
		if !ok || !b.HasX509Authority(own) || !b.HasX509Authority(orgRoot) || len(b.X509Authorities()) != 2 {
			t.Errorf("own trust domain bundle is not the CA root plus the file's root")
		}
		if ca.Bundle().HasX509Authority(orgRoot) {
			t.Error("LoadBundles modified the CA's bundle")
		}
		p, ok := set.Get(tdPartner)
		if !ok || !p.HasX509Authority(partnerRoot) || p.HasX509Authority(own) || set.Len() != 2 {
			t.Errorf("partner bundle wrong (set has %d bundles)", set.Len())
		}
	})

	tests := []struct {
		name string
		file BundleFile
		want string
	}{
		{"garbage", BundleFile{tdPartner, garbage}, fmt.Sprintf(`tlsconf: trust bundle %s for "partner.test": PEM block 1: x509: malformed certificate`, garbage)},
		{"empty", BundleFile{tdPartner, empty}, fmt.Sprintf(`tlsconf: trust bundle %s for "partner.test": no PEM CERTIFICATE block found`, empty)},
		{"leaf", BundleFile{tdPartner, leafFile}, fmt.Sprintf(`tlsconf: trust bundle %s for "partner.test": certificate 1 (CN=leaf,O=test org): not a CA certificate`, leafFile)},
		{"missing", BundleFile{tdPartner, missing}, fmt.Sprintf(`tlsconf: trust bundle for "partner.test": open %s: no such file or directory`, missing)},
		{"no trust domain", BundleFile{File: orgFile}, fmt.Sprintf(`tlsconf: trust bundle %s: no trust domain given`, orgFile)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBundles(ca.Bundle(), []BundleFile{tt.file})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}
