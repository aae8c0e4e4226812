package workload_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

var errCADown = errors.New("CA key unreadable")

// heldIssuer mints with a real CA once gate is closed, or fails when down.
type heldIssuer struct {
	ca   *tlsconf.CA
	gate chan struct{}
	down bool
}

func (h *heldIssuer) Mint(id spiffeid.ID) (*x509svid.SVID, error) {
	<-h.gate
	if h.down {
		return nil, errCADown
	}
	return h.ca.Mint(id)
}

// newHeldFixture is a resolver over a Store whose issuer h controls.
func newHeldFixture(t *testing.T, h *heldIssuer) (*fixture, *tlsconf.Store) {
	t.Helper()
	f := newFixture(t, selfEntry())
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: demoID.TrustDomain(), StateDir: filepath.Join(t.TempDir(), "ca")})
	if err != nil {
		t.Fatal(err)
	}
	h.ca = ca
	store := tlsconf.NewStore(h, x509bundle.NewSet(ca.Bundle()), tlsconf.StoreOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	t.Cleanup(func() { store.Close() })
	reg, err := registry.New([]registry.Entry{selfEntry()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := workload.New(attest.New(attest.Options{}), reg, store, workload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	f.res = res
	return f, store
}

// TestResolveDoesNotWaitForMint: a new identity resolves while its SVID is
// still being minted, and the SVID the handshake then asks for is that
// issuance's.
func TestResolveDoesNotWaitForMint(t *testing.T) {
	h := &heldIssuer{gate: make(chan struct{})}
	f, store := newHeldFixture(t, h)
	conns, _ := f.peer("one")
	done := make(chan error, 1)
	go func() {
		_, err := f.res.Resolve(context.Background(), conns[0])
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
	case <-time.After(30 * time.Second): // a deadlock guard, not a measurement
		close(h.gate)
		t.Fatal("Resolve waited for the held issuer")
	}
	close(h.gate)
	svid, err := store.SVID(context.Background(), tlsconf.Workload{ID: demoID})
	if err != nil || svid.ID != demoID {
		t.Fatalf("SVID after Resolve: %v, %v", svid, err)
	}
}

// TestResolveRefusesWhileIssuerBacksOff: once the issuer has failed for an
// identity, Resolve says so until the backoff passes.
func TestResolveRefusesWhileIssuerBacksOff(t *testing.T) {
	h := &heldIssuer{gate: make(chan struct{}), down: true}
	close(h.gate)
	f, store := newHeldFixture(t, h)
	conns, _ := f.peer("many")
	if _, err := f.res.Resolve(context.Background(), conns[0]); err != nil {
		t.Fatalf("first Resolve: %v (the failure is not known yet)", err)
	}
	if _, err := store.SVID(context.Background(), tlsconf.Workload{ID: demoID}); !errors.Is(err, errCADown) {
		t.Fatalf("SVID: %v, want the issuer's failure", err)
	}
	_, err := f.res.Resolve(context.Background(), conns[1])
	if !errors.Is(err, errCADown) {
		t.Fatalf("Resolve during the backoff: %v, want the issuer's failure", err)
	}
}
