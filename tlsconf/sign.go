package tlsconf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha256" // crypto.SHA256 for P-256 CAs
	_ "crypto/sha512" // crypto.SHA384, SHA512 for P-384, P-521 CAs
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Signing a certificate.
//
// x509.CreateCertificate verifies every signature it makes with the
// signer's public key, unconditionally (crypto/x509 signTBS: "Check the
// signature to ensure the crypto.Signer behaved correctly"); no option or
// GODEBUG turns it off. For a P-256 CA that verification costs more than
// the signature itself, about 45% of a Mint. The check is there for
// crypto.Signers Go does not control — HSMs, KMS clients, remote signers —
// that may return garbage. For a CA key held in memory as an
// *ecdsa.PrivateKey the signer is Go's own ECDSA, the same code crypto/tls
// uses for every handshake signature without re-verifying it, and every
// peer verifies the SVID's signature at every handshake anyway, so a bad
// signature fails closed. For that key (and only that key), sign lets
// CreateCertificate build the TBSCertificate (all the encoding of names,
// validity and extensions stays Go's), signs it with crypto/ecdsa and
// wraps it in the three-field Certificate SEQUENCE, then parses the result
// with x509.ParseCertificate as before. Every other key type goes through
// CreateCertificate whole, self-check included.

// errTBSCaptured stops x509.CreateCertificate once it has handed the
// TBSCertificate to tbsCapture.
var errTBSCaptured = errors.New("tlsconf: TBSCertificate captured")

// tbsCapture is the crypto.MessageSigner given to x509.CreateCertificate in
// place of the CA key: it records the message CreateCertificate asks it to
// sign, the DER TBSCertificate, and refuses, which ends CreateCertificate
// before its own signing and verification.
type tbsCapture struct {
	pub crypto.PublicKey // the CA's, so CreateCertificate picks its algorithm and matches the parent
	tbs []byte
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.pub }

func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.tbs = msg
	return nil, errTBSCaptured
}

// Sign is never called: crypto.SignMessage prefers SignMessage.
func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("tlsconf: tbsCapture.Sign called; expected SignMessage")
}

// sign signs tmpl for pub with the CA key and parses the result.
func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	key, ok := ca.signer.(*ecdsa.PrivateKey)
	if !ok {
		return signVerified(tmpl, ca.cert, pub, ca.signer)
	}
	return signECDSA(tmpl, ca.cert, pub, key)
}

// signVerified is x509.CreateCertificate with its self-check, then parse.
func signVerified(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	return cert, nil
}

// signECDSA signs the TBSCertificate x509.CreateCertificate builds for tmpl
// with key directly (see the comment at the top of this file).
func signECDSA(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key *ecdsa.PrivateKey) (*x509.Certificate, error) {
	hash, alg, err := ecdsaHash(key.Curve)
	if err != nil {
		return nil, err
	}
	capture := &tbsCapture{pub: key.Public()}
	if _, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, capture); !errors.Is(err, errTBSCaptured) {
		if err == nil {
			err = errors.New("x509.CreateCertificate did not ask for a signature")
		}
		return nil, fmt.Errorf("sign: %w", err)
	}
	tbs := capture.tbs
	algID, err := tbsSignatureAlgorithm(tbs)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	h := hash.New()
	h.Write(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	der, err := asn1.Marshal(certificate{
		TBS:       asn1.RawValue{FullBytes: tbs},
		Algorithm: asn1.RawValue{FullBytes: algID},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		return nil, fmt.Errorf("sign: encode certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	if cert.SignatureAlgorithm != alg || !bytes.Equal(cert.RawTBSCertificate, tbs) {
		return nil, fmt.Errorf("sign: certificate says %v over %d bytes, signed %v over %d", cert.SignatureAlgorithm, len(cert.RawTBSCertificate), alg, len(tbs))
	}
	return cert, nil
}

// certificate is RFC 5280's Certificate: the signed TBSCertificate, the
// signature algorithm (a copy of the TBSCertificate's) and the signature.
type certificate struct {
	TBS       asn1.RawValue
	Algorithm asn1.RawValue
	Signature asn1.BitString
}

// tbsSignatureAlgorithm returns the DER AlgorithmIdentifier inside a
// TBSCertificate: version [0] (optional), serialNumber, signature.
func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	var head struct {
		Version   int `asn1:"optional,explicit,default:0,tag:0"`
		Serial    *big.Int
		Algorithm asn1.RawValue
		// encoding/asn1 allows the fields that follow to be left out.
	}
	rest, err := asn1.Unmarshal(tbs, &head)
	if err != nil {
		return nil, fmt.Errorf("read TBSCertificate: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("read TBSCertificate: %d bytes after it", len(rest))
	}
	return head.Algorithm.FullBytes, nil
}

// ecdsaHash is the hash x509.CreateCertificate pairs with an ECDSA key of
// curve, and the resulting signature algorithm.
func ecdsaHash(curve elliptic.Curve) (crypto.Hash, x509.SignatureAlgorithm, error) {
	switch curve {
	case elliptic.P256():
		return crypto.SHA256, x509.ECDSAWithSHA256, nil
	case elliptic.P384():
		return crypto.SHA384, x509.ECDSAWithSHA384, nil
	case elliptic.P521():
		return crypto.SHA512, x509.ECDSAWithSHA512, nil
	}
	return 0, 0, fmt.Errorf("sign: unsupported ECDSA curve %s", curve.Params().Name)
}
