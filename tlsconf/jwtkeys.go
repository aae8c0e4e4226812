package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// Defaults of JWTKeyOptions.
const (
	// DefaultJWTSVIDTTL is the lifetime of a signed JWT-SVID: short, as a
	// bearer token is replayable by whoever holds it until it expires.
	DefaultJWTSVIDTTL = 5 * time.Minute
	// DefaultJWTKeyRotation is how long one JWT signing key signs.
	DefaultJWTKeyRotation = 24 * time.Hour
)

const jwtKeysName = "jwt-keys.json"

// JWTKeyOptions configure the builtin JWT signing keys.
type JWTKeyOptions struct {
	// TrustDomain is the trust domain of the workloads tokens name. Required.
	TrustDomain spiffeid.TrustDomain
	// StateDir holds jwt-keys.json (0600): every key still in the bundle,
	// so that a restart keeps signing with the same key and keeps
	// publishing the keys of tokens still valid. Created 0700 if missing;
	// a directory writable by group or others is refused. Required.
	StateDir string
	// TTL is the lifetime of a JWT-SVID. Default DefaultJWTSVIDTTL (5m).
	TTL time.Duration
	// Rotation is how long a key signs before the next one takes over.
	// The next key is in the bundle Rotation/2 before it signs, and a
	// key leaves the bundle TTL (plus 30s of clock skew) after it stopped
	// signing, when every token it signed has expired. Default
	// DefaultJWTKeyRotation (24h).
	Rotation time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives key generation and removal. Default: no logging.
	Logger zerolog.Logger
}

// JWTKeys is the builtin CA's JWT signing side: ES256 keys under the state
// directory, rotated with overlap, and the JWT bundle (JWKS) publishing
// them. Rotation happens when a token is signed or the bundle is read, so
// an idle node rotates at its next use, never publishing a key later than
// Rotation/2 before it signs. It is safe for concurrent use.
type JWTKeys struct {
	opts JWTKeyOptions
	file string

	mu     sync.Mutex
	keys   []*jwtKey // by activation, oldest first
	bundle *jwtbundle.Set
}

type jwtKey struct {
	kid      string
	priv     *ecdsa.PrivateKey
	activate time.Time     // signs from then until the next key's activation
	maxTTL   time.Duration // the longest TTL of a token it signed
	signer   jose.Signer
}

// jwtKeyFile is the JSON form of jwt-keys.json.
type jwtKeyFile struct {
	Keys []jwtKeyRecord `json:"keys"`
}

type jwtKeyRecord struct {
	KID      string    `json:"kid"`
	PKCS8    []byte    `json:"pkcs8"`
	Activate time.Time `json:"activate"`
	MaxTTL   string    `json:"max_ttl"`
}

// LoadOrCreateJWTKeys loads the JWT signing keys under opts.StateDir,
// generating the first at first start, and rotates them if due.
func LoadOrCreateJWTKeys(opts JWTKeyOptions) (*JWTKeys, error) {
	switch {
	case opts.TrustDomain.IsZero():
		return nil, errors.New("tlsconf: JWT keys: trust domain is required")
	case opts.StateDir == "":
		return nil, errors.New("tlsconf: JWT keys: a state directory is required")
	case opts.TTL < 0 || opts.Rotation < 0:
		return nil, fmt.Errorf("tlsconf: JWT keys: negative TTL %s or rotation %s", opts.TTL, opts.Rotation)
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultJWTSVIDTTL
	}
	if opts.Rotation == 0 {
		opts.Rotation = DefaultJWTKeyRotation
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := ensureStateDir(opts.StateDir); err != nil {
		return nil, err
	}
	k := &JWTKeys{opts: opts, file: filepath.Join(opts.StateDir, jwtKeysName)}
	have, err := exists(k.file)
	if err != nil {
		return nil, err
	}
	if have {
		if err := k.load(); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.maintain(opts.Now()); err != nil {
		return nil, err
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("tlsconf: JWT keys: no signing key in %s", k.file)
	}
	return k, nil
}

// ensureStateDir creates dir 0700 if missing and refuses one writable by
// group or others.
func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlsconf: create state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("tlsconf: state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("tlsconf: state directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("tlsconf: state directory %s has mode %04o, writable by group or others; run `chmod 700 %s`", dir, perm, dir)
	}
	return nil
}

func (k *JWTKeys) load() error {
	b, err := readSecretFile(k.file, "JWT keys")
	if err != nil {
		return err
	}
	defer clear(b)
	var f jwtKeyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("tlsconf: JWT keys %s: %w; remove the file to generate a new key (tokens signed by the old keys then fail validation)", k.file, err)
	}
	for _, r := range f.Keys {
		key, err := x509.ParsePKCS8PrivateKey(r.PKCS8)
		clear(r.PKCS8)
		if err != nil {
			return fmt.Errorf("tlsconf: JWT keys %s: key %s: %w", k.file, r.KID, err)
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return fmt.Errorf("tlsconf: JWT keys %s: key %s is not an ECDSA P-256 key", k.file, r.KID)
		}
		ttl, err := time.ParseDuration(r.MaxTTL)
		if err != nil {
			return fmt.Errorf("tlsconf: JWT keys %s: key %s: max_ttl: %w", k.file, r.KID, err)
		}
		jk, err := newJWTKey(ec, r.Activate, ttl)
		if err != nil {
			return err
		}
		if jk.kid != r.KID {
			return fmt.Errorf("tlsconf: JWT keys %s: key %s has key ID %s", k.file, r.KID, jk.kid)
		}
		k.keys = append(k.keys, jk)
	}
	slices.SortFunc(k.keys, func(a, b *jwtKey) int { return a.activate.Compare(b.activate) })
	return nil
}

// newJWTKey wraps priv, its key ID being its RFC 7638 thumbprint.
func newJWTKey(priv *ecdsa.PrivateKey, activate time.Time, maxTTL time.Duration) (*jwtKey, error) {
	tp, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: JWT key thumbprint: %w", err)
	}
	kid := hex.EncodeToString(tp[:16])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: JWT signer: %w", err)
	}
	return &jwtKey{kid: kid, priv: priv, activate: activate, maxTTL: maxTTL, signer: signer}, nil
}

// active returns the key that signs at now: the last one activated, or
// the oldest (published since it was made) when the clock went back
// before every activation.
func (k *JWTKeys) active(now time.Time) *jwtKey {
	if len(k.keys) == 0 {
		return nil
	}
	cur := k.keys[0]
	for _, key := range k.keys[1:] {
		if !key.activate.After(now) {
			cur = key
		}
	}
	return cur
}

// maintain brings the keys to now: the first key, the next key published
// Rotation/2 before it signs, keys whose tokens have all expired dropped.
// It writes the state file on any change; a change that cannot be written
// is not made (a key the file lacks would be lost at restart, and with it
// the tokens it signed). k.mu is held.
func (k *JWTKeys) maintain(now time.Time) error {
	o := k.opts
	keys := slices.Clone(k.keys)
	changed := false
	// Keys that stopped signing more than their tokens' lifetime ago.
	for len(keys) > 1 && !now.Before(keys[1].activate.Add(keys[0].maxTTL+clockSkew)) {
		keys = keys[1:]
		changed = true
	}
	cur := k.active(now)
	if i := slices.Index(keys, cur); i >= 0 && cur.maxTTL < o.TTL {
		c := *cur // the TTL grew (a restart with a new config)
		c.maxTTL = o.TTL
		keys[i] = &c
		cur, changed = &c, true
	}
	prepublish := o.Rotation / 2
	last := (*jwtKey)(nil)
	if len(keys) > 0 {
		last = keys[len(keys)-1]
	}
	switch {
	case cur == nil && last == nil:
		key, err := generateJWTKey(now, o.TTL)
		if err != nil {
			return err
		}
		keys, changed = append(keys, key), true
	case last == cur && !now.Before(cur.activate.Add(o.Rotation-prepublish)):
		at := cur.activate.Add(o.Rotation)
		if at.Before(now.Add(prepublish)) {
			at = now.Add(prepublish) // idle past its turn: still published first
		}
		key, err := generateJWTKey(at, o.TTL)
		if err != nil {
			return err
		}
		keys, changed = append(keys, key), true
	}
	if !changed {
		if k.bundle == nil {
			k.bundle = k.makeBundle(keys)
		}
		return nil
	}
	if err := k.save(keys); err != nil {
		return err
	}
	for _, old := range k.keys {
		if !slices.ContainsFunc(keys, func(n *jwtKey) bool { return n.kid == old.kid }) {
			o.Logger.Info().Str("kid", old.kid).Msg("JWT signing key removed from the bundle: every token it signed has expired")
		}
	}
	for _, n := range keys {
		if !slices.ContainsFunc(k.keys, func(old *jwtKey) bool { return n.kid == old.kid }) {
			o.Logger.Info().Str("kid", n.kid).Time("signs_from", n.activate).Msg("JWT signing key generated and published")
		}
	}
	k.keys = keys
	k.bundle = k.makeBundle(keys)
	return nil
}

func generateJWTKey(activate time.Time, ttl time.Duration) (*jwtKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: generate JWT key: %w", err)
	}
	return newJWTKey(priv, activate, ttl)
}

func (k *JWTKeys) save(keys []*jwtKey) error {
	var f jwtKeyFile
	for _, key := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(key.priv)
		if err != nil {
			return fmt.Errorf("tlsconf: encode JWT key: %w", err)
		}
		f.Keys = append(f.Keys, jwtKeyRecord{KID: key.kid, PKCS8: der, Activate: key.activate.UTC(), MaxTTL: key.maxTTL.String()})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	for _, r := range f.Keys {
		clear(r.PKCS8)
	}
	if err != nil {
		return fmt.Errorf("tlsconf: encode JWT keys: %w", err)
	}
	err = writeFileAtomic(k.file, b, 0o600)
	clear(b)
	return err
}

func (k *JWTKeys) makeBundle(keys []*jwtKey) *jwtbundle.Set {
	b := jwtbundle.New(k.opts.TrustDomain)
	for _, key := range keys {
		// AddJWTAuthority fails only for an empty key ID.
		_ = b.AddJWTAuthority(key.kid, key.priv.Public())
	}
	return jwtbundle.NewSet(b)
}

// Bundles returns the JWT bundle set: the local trust domain's keys, the
// one that signs, the next one once published, and those whose tokens may
// still be valid. A rotation replaces the set; it must not be modified.
func (k *JWTKeys) Bundles() *jwtbundle.Set {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.maintain(k.opts.Now()); err != nil {
		k.opts.Logger.Error().Err(err).Msg("JWT key rotation failed; the current keys stay in use")
	}
	return k.bundle
}

// Sign returns a JWT-SVID naming id for audience, valid for the TTL.
// Claims: sub (id), aud, exp, iat, jti (128 random bits); header alg
// ES256, typ JWT, kid.
func (k *JWTKeys) Sign(id spiffeid.ID, audience []string) (*jwtsvid.SVID, error) {
	token, _, err := k.signToken(id, audience)
	if err != nil {
		return nil, err
	}
	// ParseInsecure is how a jwtsvid.SVID is made; it also checks what was
	// just signed against the spec's rules (subject, exp, audience).
	svid, err := jwtsvid.ParseInsecure(token, audience[:1])
	if err != nil {
		return nil, fmt.Errorf("tlsconf: signed JWT-SVID does not parse: %w", err)
	}
	return svid, nil
}

// signToken signs a token and returns it and its key ID.
func (k *JWTKeys) signToken(id spiffeid.ID, audience []string) (token, kid string, err error) {
	if id.IsZero() || id.TrustDomain() != k.opts.TrustDomain {
		return "", "", fmt.Errorf("tlsconf: JWT-SVID for %q: not in trust domain %s", id, k.opts.TrustDomain.Name())
	}
	if len(audience) == 0 || slices.Contains(audience, "") {
		return "", "", errors.New("tlsconf: a JWT-SVID needs at least one non-empty audience")
	}
	k.mu.Lock()
	now := k.opts.Now()
	if err := k.maintain(now); err != nil {
		k.opts.Logger.Error().Err(err).Msg("JWT key rotation failed; the current keys stay in use")
	}
	key := k.active(now)
	k.mu.Unlock()
	if key == nil {
		return "", "", errors.New("tlsconf: no JWT signing key is active")
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", "", fmt.Errorf("tlsconf: jti: %w", err)
	}
	claims := jwt.Claims{
		Subject:  id.String(),
		Audience: jwt.Audience(audience),
		Expiry:   jwt.NewNumericDate(now.Add(k.opts.TTL)),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       hex.EncodeToString(jti[:]),
	}
	token, err = jwt.Signed(key.signer).Claims(claims).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("tlsconf: sign JWT-SVID: %w", err)
	}
	return token, key.kid, nil
}

// TTL is the lifetime of the JWT-SVIDs Sign returns.
func (k *JWTKeys) TTL() time.Duration { return k.opts.TTL }
