package tlsconf

import (
	"errors"
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// BundleFile names a PEM file of trust anchors (CA certificates) for one
// trust domain.
type BundleFile struct {
	TrustDomain spiffeid.TrustDomain
	File        string
}

// SyncBundles makes set hold exactly the bundles of fresh: a reload's
// trust_bundles applied to the set a Store and its handshakes use.
// x509bundle.Set is safe for concurrent use, so handshakes in progress see
// either bundle.
func SyncBundles(set, fresh *x509bundle.Set) {
	for _, b := range fresh.Bundles() {
		set.Add(b)
	}
	for _, b := range set.Bundles() {
		if !fresh.Has(b.TrustDomain()) {
			set.Remove(b.TrustDomain())
		}
	}
}

// LoadBundles returns the set of trust bundles procmesh verifies peers
// with: own (usually CA.Bundle(), may be nil) plus one bundle per trust
// domain read from files. Files naming the same trust domain, including
// own's, are merged. Every certificate in a file must be a CA certificate;
// errors name the file.
func LoadBundles(own *x509bundle.Bundle, files []BundleFile) (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	if own != nil {
		set.Add(own.Clone())
	}
	for _, f := range files {
		b, err := loadBundleFile(f)
		if err != nil {
			return nil, err
		}
		cur, ok := set.Get(f.TrustDomain)
		if !ok {
			set.Add(b)
			continue
		}
		for _, c := range b.X509Authorities() {
			cur.AddX509Authority(c)
		}
	}
	return set, nil
}

func loadBundleFile(f BundleFile) (*x509bundle.Bundle, error) {
	if f.TrustDomain.IsZero() {
		return nil, fmt.Errorf("tlsconf: trust bundle %s: no trust domain given", f.File)
	}
	data, err := os.ReadFile(f.File)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: trust bundle for %q: %w", f.TrustDomain.Name(), err)
	}
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: trust bundle %s for %q: %w", f.File, f.TrustDomain.Name(), err)
	}
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("tlsconf: trust bundle %s for %q: certificate %d (%s): %w",
				f.File, f.TrustDomain.Name(), i+1, c.Subject, errNotCA)
		}
	}
	return x509bundle.FromX509Authorities(f.TrustDomain, certs), nil
}

var errNotCA = errors.New("not a CA certificate")
