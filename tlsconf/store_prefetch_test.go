package tlsconf

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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

// stackIssuer mints with a CA and records the stack it was called on.
type stackIssuer struct {
	ca    *CA
	stack chan string
}

func (i *stackIssuer) Mint(id spiffeid.ID) (*x509svid.SVID, error) {
	buf := make([]byte, 8<<10)
	i.stack <- string(buf[:runtime.Stack(buf, false)])
	return i.ca.Mint(id)
}

// localStackIssuer is a stackIssuer marked as minting locally, as CA is.
type localStackIssuer struct{ stackIssuer }

func (*localStackIssuer) mintsLocally() {}

// TestStoreWaiterRunsLocalIssuance: a caller of SVID that needs an
// issuance a local issuer (the builtin CA) has not begun mints on its own
// goroutine rather than wait for the issuance's goroutine to be
// scheduled; an issuer that is not local (it may do I/O, and the caller's
// context must end the wait) always mints on the Store's goroutine. One
// P makes "not begun" certain: the issuance's goroutine cannot run until
// the caller blocks.
func TestStoreWaiterRunsLocalIssuance(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ca := newStateCA(t, tdExample, time.Hour, nil)
	for _, tc := range []struct {
		name   string
		issuer interface {
			Issuer
			stacks() chan string
		}
		inline bool
	}{
		{"local", &localStackIssuer{stackIssuer{ca: ca, stack: make(chan string, 1)}}, true},
		{"not local", &stackIssuer{ca: ca, stack: make(chan string, 1)}, false},
	} {
		s := NewStore(tc.issuer, nil, StoreOptions{})
		svid, err := s.SVID(context.Background(), Workload{ID: idBilling})
		if err != nil || svid.ID != idBilling {
			t.Fatalf("%s: SVID: %v, %v", tc.name, svid, err)
		}
		stack := <-tc.issuer.stacks()
		if inline := strings.Contains(stack, "(*Store).SVID("); inline != tc.inline {
			t.Errorf("%s issuer: minted on the caller's goroutine: %v, want %v; stack:\n%s", tc.name, inline, tc.inline, stack)
		}
		s.Close()
	}
}

func (i *stackIssuer) stacks() chan string { return i.stack }
