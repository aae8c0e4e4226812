// Package tlsconf decides which certificate a workload presents upstream and
// which roots procmesh trusts when it verifies the other side.
//
// It provides:
//
//   - CA, the builtin issuer: an ECDSA P-256 root generated once under a
//     state directory, or an operator-supplied intermediate under an
//     organisation root, that mints short-lived X509-SVIDs;
//   - KeyPool, SVID keys generated ahead of time by one background
//     goroutine, so that minting for a new identity does not wait for key
//     generation (sign.go explains why Mint also skips the re-verification
//     x509.CreateCertificate does, for in-memory ECDSA CA keys only);
//   - Store, a per-SPIFFE-ID cache of SVIDs over an Issuer that issues at most
//     once per identity at a time, renews at half-life in the background and
//     keeps serving still-valid SVIDs with exponential backoff while the
//     issuer is down; Prefetch starts an issuance without waiting for it;
//   - JWTKeys, the builtin CA's ES256 JWT signing keys under the state
//     directory, rotated with overlap (the next key is published before it
//     signs, the old one kept until its tokens expired), and their JWT
//     bundle; a Store given them (StoreOptions.JWT) is a JWTSource;
//   - LoadBundles, the trust bundles per trust domain read from PEM files;
//   - ClientConfig and AuthorizerFor, the upstream mTLS client configuration
//     built with go-spiffe's tlsconfig, one TLS session cache per config.
//
// What it leaves out: it never verifies X.509 chains itself (go-spiffe's
// x509svid and tlsconfig do), it does not attest processes (package attest
// does) and it does not decide which SPIFFE ID a process gets (package
// registry does). It has no SPIFFE Workload API or SPIRE client: the Source
// interface is the seam where package spire plugs in SPIRE's Delegated
// Identity API (Workload.PID and Workload.Selectors are for such sources;
// the builtin Store ignores them).
//
// Keys never leave the process except the CA key, which is written once to
// StateDir/ca.key with mode 0600, and the JWT signing keys, kept in
// StateDir/jwt-keys.json with mode 0600; no key or token is ever logged.
package tlsconf
