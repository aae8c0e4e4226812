package tlsconf

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStorePrefetch: Prefetch starts one issuance and returns without
// waiting for it; SVID then waits for that issuance instead of starting
// another; once an SVID is cached Prefetch starts nothing.
func TestStorePrefetch(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	iss := &testIssuer{inner: ca, gate: make(chan struct{})}
	s := NewStore(iss, nil, StoreOptions{})
	defer s.Close()
	w := Workload{ID: idBilling}

	// The issuer is held: a Prefetch that waited for it would never return.
	if err := s.Prefetch(w); err != nil {
		t.Fatalf("Prefetch: %v", err)
	}
	if err := s.Prefetch(w); err != nil {
		t.Fatalf("second Prefetch: %v", err)
	}
	if s.inflight(idBilling) == nil {
		t.Fatal("Prefetch started no issuance")
	}
	close(iss.gate)
	svid, err := s.SVID(context.Background(), w)
	if err != nil || svid.ID != idBilling {
		t.Fatalf("SVID after Prefetch: %v, %v", svid, err)
	}
	if err := s.Prefetch(w); err != nil {
		t.Fatal(err)
	}
	if n := iss.calls.Load(); n != 1 {
		t.Errorf("%d issuances for two Prefetch calls, an SVID call and a Prefetch with an SVID cached; want 1", n)
	}
}

// TestStorePrefetchErrors: Prefetch fails at once when no SVID can be had:
// after a failed issuance within its backoff, once the Store is closed, for
// a workload without an ID.
func TestStorePrefetchErrors(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	iss := &testIssuer{inner: ca}
	iss.down.Store(true)
	s := NewStore(iss, nil, StoreOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	w := Workload{ID: idBilling}
	if err := s.Prefetch(w); err != nil {
		t.Fatalf("first Prefetch: %v (the failure is not known yet)", err)
	}
	s.settle(t, idBilling)
	if err := s.Prefetch(w); !errors.Is(err, errIssuerDown) {
		t.Errorf("Prefetch within the backoff: %v, want the issuer's error", err)
	}
	if n := iss.calls.Load(); n != 1 {
		t.Errorf("%d issuances, want 1: the backoff holds", n)
	}
	if err := s.Prefetch(Workload{}); err == nil {
		t.Error("Prefetch of a workload without an ID succeeded")
	}
	s.Close()
	if err := s.Prefetch(w); !errors.Is(err, errStoreClosed) {
		t.Errorf("Prefetch after Close: %v, want %v", err, errStoreClosed)
	}
}
