package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestMint_SVIDProfile(t *testing.T) {
	clock := newFakeClock()
	ca := newStateCA(t, tdExample, 90*time.Minute, clock.Now)
	svid := mustMint(t, ca, idBilling)
	leaf := svid.Certificates[0]

	if svid.ID != idBilling {
		t.Errorf("ID %s, want %s", svid.ID, idBilling)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != idBilling.String() {
		t.Errorf("URI SANs %v, want exactly [%s]", leaf.URIs, idBilling)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("leaf has non-URI SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Error("leaf is not CA:FALSE")
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("key usage %b, want digitalSignature only", leaf.KeyUsage)
	}
	if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("extended key usage %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
	}
	if pub, ok := svid.PrivateKey.Public().(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", svid.PrivateKey.Public())
	}
	if got := leaf.SerialNumber.BitLen(); got != 128 {
		t.Errorf("serial has %d bits, want 128", got)
	}
	if want := clock.Now().Add(-30 * time.Second); !leaf.NotBefore.Equal(want) {
		t.Errorf("NotBefore %s, want now-30s = %s", leaf.NotBefore, want)
	}
	if want := clock.Now().Add(90 * time.Minute); !leaf.NotAfter.Equal(want) {
		t.Errorf("NotAfter %s, want now+TTL = %s", leaf.NotAfter, want)
	}
	if other := mustMint(t, ca, idBilling); other.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 ||
		other.PrivateKey.Public().(*ecdsa.PublicKey).Equal(svid.PrivateKey.Public()) {
		t.Error("two mints share a serial or a key")
	}

	// go-spiffe's own X509-SVID profile checks accept it...
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509svid.ParseRaw(certs, key); err != nil {
		t.Errorf("x509svid.ParseRaw rejects the minted SVID: %v", err)
	}
	// ...and it verifies against the CA's bundle at the CA's time.
	id, _, err := x509svid.Verify(svid.Certificates, ca.Bundle(), x509svid.WithTime(clock.Now()))
	if err != nil || id != idBilling {
		t.Errorf("Verify: %s, %v", id, err)
	}
}

func TestMint_TTLCappedAtCANotAfter(t *testing.T) {
	p := newOrgPKI(t)
	tmpl := caTemplate("short-lived node CA", "spiffe://example.org")
	tmpl.NotAfter = time.Now().Add(10 * time.Minute).Truncate(time.Second)
	inter := issue(t, tmpl, p.root, p.rootKey, p.interKey.Public())
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(CAOptions{
		TrustDomain: tdExample, SVIDTTL: time.Hour,
		CertFile: writeFile(t, filepath.Join(dir, "ca.pem"), certsPEM(inter, p.root), 0o644),
		KeyFile:  writeFile(t, filepath.Join(dir, "ca.key"), pkcs8PEM(t, p.interKey), 0o600),
	})
	if err != nil {
		t.Fatal(err)
	}
	leaf := mustMint(t, ca, idBilling).Certificates[0]
	if !leaf.NotAfter.Equal(inter.NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", leaf.NotAfter, inter.NotAfter)
	}

	ca.now = func() time.Time { return inter.NotAfter.Add(time.Second) }
	if _, err := ca.Mint(idBilling); err == nil {
		t.Error("an expired CA minted an SVID")
	}
}

// TestThreat_I9_NonCanonicalID: IDs outside the trust domain are never
// minted, and certificates carrying a non-canonical SPIFFE ID, even signed
// by a trusted CA, fail the handshake in both directions.
func TestThreat_I9_NonCanonicalID(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	for _, tt := range []struct {
		id   spiffeid.ID
		want string
	}{
		{spiffeid.RequireFromString("spiffe://example.com/billing"), `tlsconf: mint spiffe://example.com/billing: not in trust domain "example.org"`},
		{spiffeid.RequireFromString("spiffe://example.org.evil/billing"), `tlsconf: mint spiffe://example.org.evil/billing: not in trust domain "example.org"`},
		{tdExample.ID(), "tlsconf: mint spiffe://example.org: an X509-SVID needs a path"},
		{spiffeid.ID{}, "tlsconf: mint: empty SPIFFE ID"},
	} {
		if _, err := ca.Mint(tt.id); err == nil || err.Error() != tt.want {
			t.Errorf("Mint(%q): %v, want %q", tt.id, err, tt.want)
		}
	}

	peer := newUpstream(t)
	bundles := x509bundle.NewSet(ca.Bundle(), peer.bundles.Bundles()[0])
	forge := func(t *testing.T, u *url.URL) *x509svid.SVID {
		key := newKey(t)
		serial, _ := randomSerial()
		leaf, err := ca.sign(&x509.Certificate{
			SerialNumber: serial, URIs: []*url.URL{u},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		// A struct literal: go-spiffe's parsers would refuse to build it.
		return &x509svid.SVID{ID: idBilling, Certificates: []*x509.Certificate{leaf}, PrivateKey: key}
	}
	parse := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	canonical := spiffeid.RequireFromString("spiffe://example.org/a")
	for _, tt := range []struct {
		u      *url.URL
		accept bool
	}{
		{parse("spiffe://example.org/a"), true}, // control: same construction, canonical
		// Go's x509 parser lowercases the URI scheme (RFC 3986 3.1), so this
		// reaches go-spiffe as the canonical ID: no distinct identity.
		{&url.URL{Scheme: "SPIFFE", Host: "example.org", Path: "/a"}, true},
		{parse("spiffe://Example.org/a"), false},
		{parse("spiffe://example.org/a/../b"), false},
		{parse("spiffe://example.org/a/./b"), false},
		{parse("spiffe://example.org//a"), false},
		{parse("spiffe://example.org/a/"), false},
		{parse("spiffe://example.org/a%2Fb"), false},
		{parse("spiffe://example.org/a%20b"), false},
		{parse("spiffe://example.org:8443/a"), false},
		{parse("spiffe://user@example.org/a"), false},
		{parse("spiffe://example.org/a?x=1"), false},
		{parse("spiffe://example.org/a#frag"), false},
		{parse("https://example.org/a"), false},
	} {
		t.Run(tt.u.String(), func(t *testing.T) {
			forged := forge(t, tt.u)
			raw := [][]byte{forged.Certificates[0].Raw}
			gotID, _, verifyErr := x509svid.ParseAndVerify(raw, bundles)

			// Upstream verifies a client presenting the forged SVID.
			asClient := handshake(t,
				tlsconfig.MTLSServerConfig(peer.svid, bundles, tlsconfig.AuthorizeMemberOf(tdExample)),
				ClientConfig(forged, bundles, tlsconfig.AuthorizeID(idEcho)))
			// procmesh's ClientConfig verifies an upstream presenting it.
			asServer := handshake(t,
				tlsconfig.MTLSServerConfig(forged, bundles, tlsconfig.AuthorizeAny()),
				ClientConfig(peer.svid, bundles, tlsconfig.AuthorizeMemberOf(tdExample)))

			if tt.accept {
				if verifyErr != nil || asClient.serverErr != nil || asServer.clientErr != nil {
					t.Fatalf("canonical control refused: verify %v, upstream %v, client %v", verifyErr, asClient.serverErr, asServer.clientErr)
				}
				if gotID != canonical {
					t.Fatalf("verified as %s, want %s", gotID, canonical)
				}
				return
			}
			if verifyErr == nil {
				t.Error("x509svid.ParseAndVerify accepted it")
			}
			if asClient.serverErr == nil {
				t.Error("upstream accepted a client certificate with it")
			}
			if asServer.clientErr == nil {
				t.Error("ClientConfig accepted an upstream certificate with it")
			}
		})
	}
}
