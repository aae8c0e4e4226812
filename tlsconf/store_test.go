package tlsconf

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		n      int
		r      float64
		lo, hi time.Duration
	}{
		{1, 0, time.Second, time.Second},
		{1, 0.999, time.Second, 2 * time.Second},
		{2, 0, 2 * time.Second, 2 * time.Second},
		{3, 0.5, 6 * time.Second, 6 * time.Second},
		{6, 0.999, 32 * time.Second, time.Minute},
		{7, 0, 30 * time.Second, 30 * time.Second},
		{7, 0.999, 59 * time.Second, time.Minute},
		{1000, 0.5, 45 * time.Second, 45 * time.Second},
	}
	for _, tt := range tests {
		got := backoff(tt.n, time.Second, time.Minute, tt.r)
		if got < tt.lo || got > tt.hi {
			t.Errorf("backoff(%d, r=%v) = %s, want in [%s, %s]", tt.n, tt.r, got, tt.lo, tt.hi)
		}
	}
}

func TestStore_EvictsLeastRecentlyUsed(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	iss := &testIssuer{inner: ca}
	s := NewStore(iss, nil, StoreOptions{MaxIdentities: 2})
	defer func() { _ = s.Close() }()
	get := func(id spiffeid.ID) {
		t.Helper()
		if _, err := s.SVID(context.Background(), Workload{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	c := spiffeid.RequireFromString("spiffe://example.org/c")
	get(idBilling)
	get(idAnalyst)
	get(idBilling) // analytics is now the least recently used
	get(c)         // evicts analytics
	get(idBilling)
	if n := iss.calls.Load(); n != 3 {
		t.Fatalf("%d mints, want 3 (cache hits for billing)", n)
	}
	get(idAnalyst)
	if n := iss.calls.Load(); n != 4 {
		t.Fatalf("%d mints, want 4 (analytics was evicted)", n)
	}
}

func TestStore_CloseAndCancel(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	iss := &testIssuer{inner: ca, gate: make(chan struct{})}
	s := NewStore(iss, nil, StoreOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { _, err := s.SVID(ctx, Workload{ID: idBilling}); errc <- err }()
	go func() { _, err := s.SVID(context.Background(), Workload{ID: idBilling}); errc <- err }()
	waitFor(t, "two callers queued", func() bool { return s.waiters() == 2 })

	cancel()
	if err := <-errc; err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v, want context.Canceled", err)
	}
	closed := make(chan struct{})
	go func() { _ = s.Close(); close(closed) }()
	if err := <-errc; !errors.Is(err, errStoreClosed) {
		t.Fatalf("caller waiting at Close: %v, want %v", err, errStoreClosed)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a Mint was still running")
	default:
	}
	close(iss.gate)
	<-closed
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.SVID(context.Background(), Workload{ID: idBilling}); !errors.Is(err, errStoreClosed) {
		t.Fatalf("SVID after Close: %v", err)
	}
}

// wrongIssuer returns an SVID for another identity.
type wrongIssuer struct{ ca *CA }

func (w wrongIssuer) Mint(spiffeid.ID) (*x509svid.SVID, error) { return w.ca.Mint(idAnalyst) }

func TestStore_RefusesBadIssuerAnswers(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	s := NewStore(wrongIssuer{ca}, nil, StoreOptions{})
	defer func() { _ = s.Close() }()
	_, err := s.SVID(context.Background(), Workload{ID: idBilling})
	want := "tlsconf: no valid SVID for spiffe://example.org/billing: issuer returned an SVID for spiffe://example.org/analytics"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	for _, w := range []Workload{{}, {ID: tdExample.ID()}} {
		if _, err := s.SVID(context.Background(), w); err == nil || !strings.HasPrefix(err.Error(), "tlsconf: workload") {
			t.Errorf("SVID(%v): %v, want a workload error", w.ID, err)
		}
	}
}
