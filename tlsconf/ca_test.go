package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestLoadOrCreateCA_GeneratesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "procmesh")
	opts := CAOptions{TrustDomain: tdExample, StateDir: dir}
	ca1, err := LoadOrCreateCA(opts)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}

	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, "ca.pem"), 0o644},
		{filepath.Join(dir, "ca.key"), 0o600},
	} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, fi.Mode(), f.mode)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("state dir holds %d entries, want ca.pem and ca.key only (no temp files)", len(entries))
	}

	roots := ca1.Bundle().X509Authorities()
	if len(roots) != 1 {
		t.Fatalf("bundle has %d roots, want 1", len(roots))
	}
	root := roots[0]
	pub, ok := root.PublicKey.(*ecdsa.PublicKey)
	switch {
	case !ok || pub.Curve != elliptic.P256():
		t.Errorf("root key %T, want ECDSA P-256", root.PublicKey)
	case !root.IsCA || !root.BasicConstraintsValid:
		t.Error("root is not CA:TRUE")
	case root.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign:
		t.Errorf("root key usage %b, want keyCertSign|cRLSign", root.KeyUsage)
	case len(root.URIs) != 1 || root.URIs[0].String() != "spiffe://example.org":
		t.Errorf("root URI SANs %v, want [spiffe://example.org]", root.URIs)
	case root.Subject.CommonName != "procmesh example.org root" || fmt.Sprint(root.Subject.Organization) != "[procmesh]":
		t.Errorf("root subject %q", root.Subject)
	case root.NotAfter.Sub(root.NotBefore) < 10*365*24*time.Hour:
		t.Errorf("root validity %s, want 10 years", root.NotAfter.Sub(root.NotBefore))
	case !isSelfSigned(root):
		t.Error("root is not self-signed")
	}
	if s := mustMint(t, ca1, idBilling); len(s.Certificates) != 1 {
		t.Errorf("SVID chain has %d certificates, want the leaf only (root stays out)", len(s.Certificates))
	}

	ca2, err := LoadOrCreateCA(opts)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	if !bytes.Equal(ca1.BundlePEM(), ca2.BundlePEM()) {
		t.Fatal("second start generated a new root instead of reusing ca.pem")
	}
	if got, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err != nil || !bytes.Equal(got, ca1.BundlePEM()) {
		t.Errorf("BundlePEM differs from ca.pem (err %v)", err)
	}
	// An SVID minted after the restart verifies against the first start's bundle.
	s := mustMint(t, ca2, idBilling)
	if _, _, err := x509svid.Verify(s.Certificates, ca1.Bundle()); err != nil {
		t.Errorf("SVID from the reloaded CA does not verify against the original root: %v", err)
	}
}

func TestLoadOrCreateCA_StateDirRefusals(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) // dir holds a generated CA
		want    func(dir string) string
	}{
		{
			name:    "key readable by group",
			prepare: func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "ca.key"), 0o640) },
			want: func(dir string) string {
				k := filepath.Join(dir, "ca.key")
				return fmt.Sprintf("tlsconf: CA key %s has mode 0640, open to group or others; run `chmod 600 %s`", k, k)
			},
		},
		{
			name:    "key readable by others",
			prepare: func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, "ca.key"), 0o604) },
			want: func(dir string) string {
				k := filepath.Join(dir, "ca.key")
				return fmt.Sprintf("tlsconf: CA key %s has mode 0604, open to group or others; run `chmod 600 %s`", k, k)
			},
		},
		{
			name:    "directory writable by others",
			prepare: func(t *testing.T, dir string) { chmod(t, dir, 0o777) },
			want: func(dir string) string {
				return fmt.Sprintf("tlsconf: state directory %s has mode 0777, writable by group or others; run `chmod 700 %s`", dir, dir)
			},
		},
		{
			name:    "key missing",
			prepare: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, "ca.key")) },
			want: func(dir string) string {
				c, k := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
				return fmt.Sprintf("tlsconf: %s exists but %s is missing; restore it, or remove %s to generate a new CA (peers then have to trust the new ca.pem)", c, k, c)
			},
		},
		{
			name: "key replaced by another key",
			prepare: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "ca.key"), pkcs8PEM(t, newKey(t)), 0o600)
			},
			want: func(dir string) string {
				return fmt.Sprintf("tlsconf: CA key %s does not match the certificate in %s", filepath.Join(dir, "ca.key"), filepath.Join(dir, "ca.pem"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			opts := CAOptions{TrustDomain: tdExample, StateDir: dir}
			if _, err := LoadOrCreateCA(opts); err != nil {
				t.Fatal(err)
			}
			tt.prepare(t, dir)
			_, err := LoadOrCreateCA(opts)
			if err == nil || err.Error() != tt.want(dir) {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want(dir))
			}
		})
	}
}

func TestLoadOrCreateCA_OptionErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		opts CAOptions
		want string
	}{
		{"no trust domain", CAOptions{StateDir: dir}, "tlsconf: CA: trust domain is required"},
		{"no source", CAOptions{TrustDomain: tdExample}, "tlsconf: CA: set a state directory or an operator certificate and key file"},
		{"cert without key", CAOptions{TrustDomain: tdExample, CertFile: "/x.pem"}, "tlsconf: CA: operator CA needs both a certificate file and a key file"},
		{"negative TTL", CAOptions{TrustDomain: tdExample, StateDir: dir, SVIDTTL: -time.Second}, "tlsconf: CA: SVID TTL -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadOrCreateCA(tt.opts)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestParseKeyPEM_NeverQuotesKey(t *testing.T) {
	key := pkcs8PEM(t, newKey(t))
	broken := bytes.Replace(key, []byte("PRIVATE KEY-----\n"), []byte("PRIVATE KEY-----\nAAAA"), 1)
	_, err := parseKeyPEM(broken)
	if err == nil {
		t.Fatal("corrupted key accepted")
	}
	body := strings.Split(string(key), "\n")[1]
	if strings.Contains(err.Error(), body[:16]) {
		t.Fatalf("error quotes key material: %v", err)
	}
}
