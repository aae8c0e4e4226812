package proxy

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// countingJWT is the builtin Store's JWT signing, counted, and made to
// fail while fail is set.
type countingJWT struct {
	*tlsconf.Store
	calls atomic.Int32
	fail  atomic.Bool
	gate  chan struct{} // when not nil, each call waits for it
}

func (c *countingJWT) JWTSVID(ctx context.Context, w tlsconf.Workload, aud []string) (*jwtsvid.SVID, error) {
	c.calls.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if c.fail.Load() {
		return nil, errors.New("signing key unavailable")
	}
	return c.Store.JWTSVID(ctx, w, aud)
}

func newCountingJWT(t *testing.T) *countingJWT {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	dir := filepath.Join(t.TempDir(), "state")
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: td, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tlsconf.LoadOrCreateJWTKeys(tlsconf.JWTKeyOptions{TrustDomain: td, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st := tlsconf.NewStore(ca, nil, tlsconf.StoreOptions{JWT: keys})
	t.Cleanup(func() { st.Close() })
	return &countingJWT{Store: st}
}

func jwtIdentity(id string, pid int32) *workload.Identity {
	return &workload.Identity{Entry: registry.Entry{ID: spiffeid.RequireFromString(id)}, Process: &attest.Process{Fingerprint: attest.Fingerprint{PID: pid}}}
}

// One fetch per (identity, audience) at a time however many callers wait;
// at half-life the cached token is served while one renewal runs; past
// three quarters of its life with the source failing, callers get the
// error, never the old token.
func TestJWTCacheSingleFlightAndHalfLife(t *testing.T) {
	src := newCountingJWT(t)
	src.gate = make(chan struct{})
	c := newJWTCache(src, context.Background(), zerolog.Nop())
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	c.now = func() time.Time { return time.Unix(0, now.Load()) }
	route := &Route{Name: "sts", JWTAudience: "https://sts.example", JWTHeader: "Authorization"}
	a := jwtIdentity("spiffe://example.org/a", 10)

	var wg sync.WaitGroup
	toks := make([]*jwtToken, 50)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.token(context.Background(), a, route)
			if err != nil {
				t.Error(err)
			}
			toks[i] = tok
		}()
	}
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(src.gate)
	wg.Wait()
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("%d fetches for 50 concurrent callers of one identity, want 1", n)
	}
	first := toks[0]
	for _, tok := range toks {
		if tok != first {
			t.Fatal("callers got different tokens")
		}
	}
	// Another identity is another key.
	if tok, err := c.token(context.Background(), jwtIdentity("spiffe://example.org/b", 11), route); err != nil || tok == first {
		t.Fatalf("b: %v, same token %t", err, tok == first)
	}
	// Half-life: served at once, one renewal behind it.
	now.Add(int64(tlsconf.DefaultJWTSVIDTTL/2 + time.Second))
	if tok, err := c.token(context.Background(), a, route); err != nil || tok != first {
		t.Fatalf("at half-life: %v, the cached token %t", err, tok == first)
	}
	var renewed *jwtToken
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if tok, _ := c.token(context.Background(), a, route); tok != first {
			renewed = tok
			break
		}
	}
	if renewed == nil || renewed.jtiHash == first.jtiHash {
		t.Fatal("no renewal after half-life")
	}
	// Source down past three quarters of the renewed token's life.
	src.fail.Store(true)
	now.Add(int64(tlsconf.DefaultJWTSVIDTTL*3/4 + time.Second))
	if tok, err := c.token(context.Background(), a, route); err == nil {
		t.Fatalf("a token past three quarters of its life was served (%s)", tok.jtiHash)
	}
}
