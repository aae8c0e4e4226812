package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	caCertName = "ca.pem"
	caKeyName  = "ca.key"
	// rootValidity is the lifetime of a generated root: ten years, so that a
	// node never has to rotate it unattended. Rotate by removing ca.pem and
	// ca.key and restarting (every peer must then trust the new ca.pem).
	rootValidity = 10 * 365 * 24 * time.Hour
)

// ensureStateCA makes sure StateDir holds ca.pem and ca.key, generating a
// root at first start, and returns their paths.
func ensureStateCA(opts CAOptions) (certFile, keyFile string, err error) {
	dir := opts.StateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("tlsconf: create state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", "", fmt.Errorf("tlsconf: state directory: %w", err)
	}
	if !fi.IsDir() {
		return "", "", fmt.Errorf("tlsconf: state directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return "", "", fmt.Errorf("tlsconf: state directory %s has mode %04o, writable by group or others; run `chmod 700 %s`", dir, perm, dir)
	}
	certFile, keyFile = filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName)
	haveCert, err := exists(certFile)
	if err != nil {
		return "", "", err
	}
	haveKey, err := exists(keyFile)
	if err != nil {
		return "", "", err
	}
	switch {
	case haveCert && haveKey:
		return certFile, keyFile, nil
	case haveCert != haveKey:
		present, missing := certFile, keyFile
		if haveKey {
			present, missing = keyFile, certFile
		}
		return "", "", fmt.Errorf("tlsconf: %s exists but %s is missing; restore it, or remove %s to generate a new CA (peers then have to trust the new %s)", present, missing, present, caCertName)
	}
	certDER, keyDER, err := generateRoot(opts.TrustDomain, opts.Now())
	if err != nil {
		return "", "", err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	err = writeFileAtomic(keyFile, keyPEM, 0o600)
	clear(keyPEM)
	if err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644); err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(certDER)
	opts.Logger.Info().Str("trust_domain", opts.TrustDomain.Name()).Str("cert_file", certFile).
		Str("sha256", hex.EncodeToString(sum[:])).Msg("generated CA root")
	return certFile, keyFile, nil
}

// generateRoot creates the self-signed root of td: ECDSA P-256, CA:TRUE,
// keyCertSign|cRLSign, URI SAN spiffe://<td>, valid for rootValidity.
func generateRoot(td spiffeid.TrustDomain, now time.Time) (certDER, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"procmesh"}, CommonName: "procmesh " + td.Name() + " root"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: self-sign CA: %w", err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsconf: encode CA key: %w", err)
	}
	return certDER, keyDER, nil
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("tlsconf: serial number: %w", err)
	}
	b[0] |= 0x80 // always 128 bits long
	return new(big.Int).SetBytes(b[:]), nil
}

// readKeyFile reads a private key file after checking that it is a regular
// file with no group or other permission bits.
func readKeyFile(path string) ([]byte, error) { return readSecretFile(path, "CA key") }

// readSecretFile reads a file holding private keys (what names it in
// errors) after checking that it is a regular file with no group or other
// permission bits.
func readSecretFile(path, what string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("tlsconf: %s %s is not a regular file", what, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("tlsconf: %s %s has mode %04o, open to group or others; run `chmod 600 %s`", what, path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %s: %w", what, err)
	}
	return b, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("tlsconf: %w", err)
	}
}

// writeFileAtomic writes data to path through a temporary file created 0600
// in the same directory, then renamed over path, so a crash never leaves a
// partial file and a key is never readable by others, not even briefly.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("tlsconf: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
			err = fmt.Errorf("tlsconf: write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}
