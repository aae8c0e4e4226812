package tlsconf

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

func newJWTKeys(t *testing.T, dir string, ttl, rotation time.Duration, now func() time.Time) *JWTKeys {
	t.Helper()
	k, err := LoadOrCreateJWTKeys(JWTKeyOptions{TrustDomain: tdExample, StateDir: dir, TTL: ttl, Rotation: rotation, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The Store's JWT-SVIDs follow the JWT-SVID spec: go-spiffe's validator
// accepts them against the Store's JWT bundle, for the audience asked.
func TestStoreJWTSVIDValidatesWithGoSpiffe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	keys := newJWTKeys(t, dir, 0, 0, nil)
	st := NewStore(newStateCA(t, tdExample, 0, nil), nil, StoreOptions{JWT: keys})
	defer st.Close()
	aud := []string{"https://sts.example", "other"}
	svid, err := st.JWTSVID(context.Background(), Workload{ID: idBilling}, aud)
	if err != nil {
		t.Fatal(err)
	}
	got, err := jwtsvid.ParseAndValidate(svid.Marshal(), st.JWTBundles(), []string{"https://sts.example"})
	if err != nil {
		t.Fatalf("go-spiffe refuses the JWT-SVID: %v", err)
	}
	if got.ID != idBilling {
		t.Fatalf("sub = %s, want %s", got.ID, idBilling)
	}
	if len(got.Audience) != 2 || got.Audience[0] != aud[0] {
		t.Fatalf("aud = %q", got.Audience)
	}
	if d := time.Until(got.Expiry); d <= 4*time.Minute || d > DefaultJWTSVIDTTL {
		t.Fatalf("exp in %s, want the default TTL %s", d, DefaultJWTSVIDTTL)
	}
	for _, c := range []string{"iat", "jti"} {
		if got.Claims[c] == nil {
			t.Fatalf("claim %s missing: %v", c, got.Claims)
		}
	}
	if _, err := jwtsvid.ParseAndValidate(svid.Marshal(), st.JWTBundles(), []string{"https://elsewhere"}); err == nil {
		t.Fatal("validated for an audience it was not issued for")
	}
	tok, err := jwt.ParseSigned(svid.Marshal(), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.Algorithm != "ES256" || h.ExtraHeaders[jose.HeaderType] != "JWT" || h.KeyID == "" {
		t.Fatalf("header alg=%s typ=%v kid=%q", h.Algorithm, h.ExtraHeaders[jose.HeaderType], h.KeyID)
	}
	// Two tokens never share a jti.
	again, err := st.JWTSVID(context.Background(), Workload{ID: idBilling}, aud)
	if err != nil {
		t.Fatal(err)
	}
	if again.Claims["jti"] == svid.Claims["jti"] {
		t.Fatal("two tokens with one jti")
	}
	// Another trust domain's ID is refused.
	if _, err := keys.Sign(idEcho, aud); err == nil {
		t.Fatal("signed a token for another trust domain")
	}
}

func TestStoreWithoutJWTKeys(t *testing.T) {
	st := NewStore(newStateCA(t, tdExample, 0, nil), nil, StoreOptions{})
	defer st.Close()
	if _, err := st.JWTSVID(context.Background(), Workload{ID: idBilling}, []string{"a"}); err == nil {
		t.Fatal("JWTSVID without keys succeeded")
	}
	if b := st.JWTBundles(); b.Len() != 0 {
		t.Fatalf("bundles without keys: %d", b.Len())
	}
}

// A restart signs with the same key and publishes the same keys; the file
// is 0600 and one open to others is refused.
func TestJWTKeysPersist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	k1 := newJWTKeys(t, dir, 0, 0, nil)
	_, kid1, err := k1.signToken(idBilling, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, jwtKeysName)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %04o, want 0600", file, fi.Mode().Perm())
	}
	k2 := newJWTKeys(t, dir, 0, 0, nil)
	_, kid2, err := k2.signToken(idBilling, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if kid1 != kid2 {
		t.Fatalf("after a restart the key is %s, was %s", kid2, kid1)
	}
	b, _ := k2.Bundles().Get(tdExample)
	if _, ok := b.FindJWTAuthority(kid1); !ok || len(b.JWTAuthorities()) != 1 {
		t.Fatalf("bundle after restart: %v", b.JWTAuthorities())
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadOrCreateJWTKeys(JWTKeyOptions{TrustDomain: tdExample, StateDir: dir})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key file open to others: err = %v", err)
	}
}

func bundleKIDs(t *testing.T, k *JWTKeys) map[string]bool {
	t.Helper()
	b, err := k.Bundles().GetJWTBundleForTrustDomain(tdExample)
	if err != nil {
		t.Fatal(err)
	}
	kids := map[string]bool{}
	for kid := range b.JWTAuthorities() {
		kids[kid] = true
	}
	return kids
}

// Rotation with overlap: the next key is in the bundle before it signs,
// and the old key stays until every token it signed has expired; a
// restart in between keeps the schedule.
func TestJWTKeysRotateWithOverlap(t *testing.T) {
	clock := newFakeClock()
	dir := filepath.Join(t.TempDir(), "state")
	const ttl, rot = 5 * time.Minute, time.Hour
	k := newJWTKeys(t, dir, ttl, rot, clock.Now)
	sign := func() string {
		t.Helper()
		_, kid, err := k.signToken(idBilling, []string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		return kid
	}
	a := sign()
	if kids := bundleKIDs(t, k); len(kids) != 1 || !kids[a] {
		t.Fatalf("first bundle %v", kids)
	}
	clock.Add(rot/2 + time.Second) // the next key is published, not yet signing
	if got := sign(); got != a {
		t.Fatalf("the next key signs %s before its turn", got)
	}
	kids := bundleKIDs(t, k)
	if len(kids) != 2 || !kids[a] {
		t.Fatalf("bundle at prepublication %v", kids)
	}
	var b string
	for kid := range kids {
		if kid != a {
			b = kid
		}
	}
	// A restart keeps both keys and the schedule.
	k = newJWTKeys(t, dir, ttl, rot, clock.Now)
	if got := bundleKIDs(t, k); len(got) != 2 || !got[a] || !got[b] {
		t.Fatalf("bundle after restart %v", got)
	}
	clock.Add(rot / 2) // b's turn
	if got := sign(); got != b {
		t.Fatalf("at its turn the key signing is %s, want %s", got, b)
	}
	if got := bundleKIDs(t, k); !got[a] {
		t.Fatal("the old key left the bundle while tokens it signed are still valid")
	}
	clock.Add(ttl) // a's last token expires now; clock skew keeps it a little
	if got := bundleKIDs(t, k); !got[a] {
		t.Fatal("the old key left the bundle within the clock skew")
	}
	clock.Add(clockSkew)
	if got := bundleKIDs(t, k); got[a] || !got[b] {
		t.Fatalf("bundle after the old key's tokens expired: %v", got)
	}
	// Idle past a whole period: the next key is still published before it signs.
	clock.Add(3 * rot)
	if got := sign(); got != b {
		t.Fatalf("after an idle period a new key signs at once (%s)", got)
	}
	if got := bundleKIDs(t, k); len(got) != 2 {
		t.Fatalf("after an idle period: %v", got)
	}
}

// A restart with a longer TTL keeps the current key in the bundle for the
// longer tokens it now signs; a clock set back before every activation
// still signs, with the oldest published key.
func TestJWTKeysTTLGrowsAndClockGoesBack(t *testing.T) {
	clock := newFakeClock()
	dir := filepath.Join(t.TempDir(), "state")
	const rot = time.Hour
	k := newJWTKeys(t, dir, 5*time.Minute, rot, clock.Now)
	_, a, err := k.signToken(idBilling, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	k = newJWTKeys(t, dir, 30*time.Minute, rot, clock.Now)
	clock.Add(rot/2 + time.Minute) // the next key is published
	if got := bundleKIDs(t, k); len(got) != 2 {
		t.Fatalf("no next key: %v", got)
	}
	clock.Add(rot/2 + 9*time.Minute) // it has signed for 10m; a signed 30m tokens
	if _, kid, _ := k.signToken(idBilling, []string{"a"}); kid == a {
		t.Fatal("the old key still signs")
	}
	if got := bundleKIDs(t, k); !got[a] {
		t.Fatal("the old key left the bundle before its 30m tokens expired")
	}
	clock.Add(-3 * rot)
	if _, kid, err := k.signToken(idBilling, []string{"a"}); err != nil || kid != a {
		t.Fatalf("with the clock set back: %s, %v; want the oldest key %s", kid, err, a)
	}
}
