package tlsconf

import (
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// inflight returns the channel of the issuance running for id, or nil.
func (s *Store) inflight(id spiffeid.ID) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries.Peek(id); ok && e.inflight != nil {
		return e.inflight
	}
	return nil
}

// settle waits for the issuance running for id, if any.
func (s *Store) settle(t testing.TB, id spiffeid.ID) {
	t.Helper()
	if ch := s.inflight(id); ch != nil {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("issuance for %s did not finish", id)
		}
	}
}

func (s *Store) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

func (s *Store) entryState(id spiffeid.ID) (failures int, retryAt time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries.Peek(id); ok {
		return e.failures, e.retryAt
	}
	return 0, time.Time{}
}

var errIssuerDown = errors.New("issuer down: CA key unreadable")

// testIssuer wraps an Issuer: it counts Mint calls, can fail on demand and
// can hold every Mint until its gate is opened.
type testIssuer struct {
	inner Issuer
	calls atomic.Int64
	down  atomic.Bool
	gate  chan struct{} // nil: never hold
}

func (i *testIssuer) Mint(id spiffeid.ID) (*x509svid.SVID, error) {
	i.calls.Add(1)
	if i.gate != nil {
		<-i.gate
	}
	if i.down.Load() {
		return nil, errIssuerDown
	}
	return i.inner.Mint(id)
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}
