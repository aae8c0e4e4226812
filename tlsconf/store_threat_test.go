package tlsconf

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestThreat_F4_ThunderingHerd: a burst of callers for identities with no
// SVID yet causes exactly one issuance per identity.
func TestThreat_F4_ThunderingHerd(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	for _, tt := range []struct {
		callers, ids int
	}{
		{1000, 1},
		{1000, 50},
	} {
		t.Run(fmt.Sprintf("%d callers %d IDs", tt.callers, tt.ids), func(t *testing.T) {
			iss := &testIssuer{inner: ca, gate: make(chan struct{})}
			s := NewStore(iss, nil, StoreOptions{})
			defer func() { _ = s.Close() }()
			ids := make([]spiffeid.ID, tt.ids)
			for i := range ids {
				ids[i] = spiffeid.RequireFromPathf(tdExample, "/svc/%d", i)
			}
			got := make([]*x509svid.SVID, tt.callers)
			errs := make([]error, tt.callers)
			var wg sync.WaitGroup
			for i := range tt.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i], errs[i] = s.SVID(context.Background(), Workload{ID: ids[i%tt.ids], PID: int32(1000 + i)})
				}()
			}
			// Hold the Mint calls until every caller is queued behind one,
			// or until a surplus Mint shows the protection is gone.
			waitFor(t, "all callers queued", func() bool {
				return s.waiters() == tt.callers || iss.calls.Load() > int64(tt.ids)
			})
			close(iss.gate)
			wg.Wait()

			if n := iss.calls.Load(); n != int64(tt.ids) {
				t.Fatalf("%d Mint calls for %d identities, want one each", n, tt.ids)
			}
			first := map[spiffeid.ID]*x509svid.SVID{}
			for i, svid := range got {
				if errs[i] != nil {
					t.Fatalf("caller %d: %v", i, errs[i])
				}
				id := ids[i%tt.ids]
				if svid.ID != id {
					t.Fatalf("caller %d got %s, want %s", i, svid.ID, id)
				}
				if f, ok := first[id]; ok && f != svid {
					t.Fatalf("callers for %s got different SVIDs", id)
				}
				first[id] = svid
			}
		})
	}
}

// mintLog records the clock at every successful Mint.
type mintLog struct {
	inner Issuer
	now   func() time.Time
	mu    sync.Mutex
	at    []time.Time
}

func (m *mintLog) Mint(id spiffeid.ID) (*x509svid.SVID, error) {
	svid, err := m.inner.Mint(id)
	if err == nil {
		m.mu.Lock()
		m.at = append(m.at, m.now())
		m.mu.Unlock()
	}
	return svid, err
}

// TestThreat_F2_RotationUnderLoad: with many callers asking all the time
// while the clock runs over several lifetimes, every SVID handed out is
// valid at the time of the call, no caller sees an error, and renewal
// happens at half-life, in the background, once per half-life.
func TestThreat_F2_RotationUnderLoad(t *testing.T) {
	const (
		ttl     = 2 * time.Second
		step    = 50 * time.Millisecond
		steps   = 4 * int(ttl/step)
		workers = 32
	)
	clock := newFakeClock()
	ca := newStateCA(t, tdExample, ttl, clock.Now)
	log := &mintLog{inner: ca, now: clock.Now}
	s := NewStore(log, nil, StoreOptions{Now: clock.Now})
	defer func() { _ = s.Close() }()
	w := Workload{ID: idBilling}
	if _, err := s.SVID(context.Background(), w); err != nil {
		t.Fatal(err)
	}

	var (
		stop              = make(chan struct{})
		wg                sync.WaitGroup
		calls, bad, fails atomic.Int64
		firstErr          atomic.Value
		seenMu            sync.Mutex
		seen              = map[string]bool{}
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := clock.Now()
				svid, err := s.SVID(context.Background(), w)
				calls.Add(1)
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				leaf := svid.Certificates[0]
				if t0.Before(leaf.NotBefore) || !t0.Before(leaf.NotAfter) {
					bad.Add(1)
				}
				seenMu.Lock()
				seen[leaf.SerialNumber.String()] = true
				seenMu.Unlock()
			}
		}()
	}
	for range steps {
		clock.Add(step)
		// Let the callers see this instant, then let any renewal it
		// triggered finish before time moves on.
		before := calls.Load()
		waitFor(t, "callers at this instant", func() bool { return calls.Load() >= before+workers })
		s.settle(t, idBilling)
	}
	// Each worker has at most one call in flight across the last renewal,
	// so workers+1 more calls include one that sees the last SVID.
	before := calls.Load()
	waitFor(t, "a call after the last renewal", func() bool { return calls.Load() > before+workers })
	close(stop)
	wg.Wait()

	if n := fails.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed, first: %v", n, calls.Load(), firstErr.Load())
	}
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d of %d calls returned an SVID not valid at call time", n, calls.Load())
	}
	log.mu.Lock()
	at := append([]time.Time(nil), log.at...)
	log.mu.Unlock()
	if want := 1 + int(time.Duration(steps)*step/(ttl/2)); len(at) != want {
		t.Errorf("%d mints over %s with TTL %s, want %d (one per half-life)", len(at), time.Duration(steps)*step, ttl, want)
	}
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < ttl/2 || d >= ttl/2+step {
			t.Errorf("renewal %d came %s after the previous issuance, want at half-life %s", i, d, ttl/2)
		}
	}
	if len(seen) != len(at) {
		t.Errorf("callers saw %d distinct SVIDs, issued %d", len(seen), len(at))
	}
}

// TestThreat_F3_IssuerDown: when the issuer fails, the still-valid SVID keeps
// being served, retries back off exponentially with jitter, the error is
// clear once nothing valid is left, and service resumes with the issuer.
func TestThreat_F3_IssuerDown(t *testing.T) {
	const ttl = 10 * time.Minute
	clock := newFakeClock()
	ca := newStateCA(t, tdExample, ttl, clock.Now)
	iss := &testIssuer{inner: ca}
	jitter := []float64{0.0, 0.5, 0.99, 0.25, 0.75}
	var draws int
	s := NewStore(iss, nil, StoreOptions{Now: clock.Now, Rand: func() float64 {
		r := jitter[draws%len(jitter)]
		draws++
		return r
	}})
	defer func() { _ = s.Close() }()
	ctx, w := context.Background(), Workload{ID: idBilling}

	first, err := s.SVID(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := first.Certificates[0].NotAfter
	iss.down.Store(true)
	clock.Add(ttl/2 + time.Second) // past half-life

	// Each attempt fails; the previous SVID is served meanwhile and the
	// next attempt waits backoff(n), which grows with n.
	var delays []time.Duration
	for n := 1; n <= 5; n++ {
		callsBefore := iss.calls.Load()
		got, err := s.SVID(ctx, w)
		if err != nil || got != first {
			t.Fatalf("attempt %d: got %v, %v; want the still-valid SVID", n, got, err)
		}
		s.settle(t, idBilling)
		if iss.calls.Load() != callsBefore+1 {
			t.Fatalf("attempt %d: no issuance attempted", n)
		}
		failures, retryAt := s.entryState(idBilling)
		delay := retryAt.Sub(clock.Now())
		lo := time.Second << (n - 1)
		want := lo + time.Duration(jitter[n-1]*float64(lo))
		if failures != n || delay != want {
			t.Fatalf("attempt %d: failures %d, retry in %s; want %d, %s", n, failures, delay, n, want)
		}
		delays = append(delays, delay)
		// Inside the backoff window nobody hammers the issuer.
		clock.Add(delay - time.Millisecond)
		if _, err := s.SVID(ctx, w); err != nil {
			t.Fatal(err)
		}
		if ch := s.inflight(idBilling); ch != nil || iss.calls.Load() != callsBefore+1 {
			t.Fatalf("attempt %d: retried before the backoff elapsed", n)
		}
		clock.Add(time.Millisecond)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] <= delays[i-1] {
			t.Errorf("backoff did not grow: %v", delays)
		}
	}

	// Past NotAfter nothing valid is left: a clear error naming the
	// identity and wrapping the issuer's error.
	clock.Add(notAfter.Sub(clock.Now()))
	_, err = s.SVID(ctx, w)
	want := "tlsconf: no valid SVID for spiffe://example.org/billing: " + errIssuerDown.Error()
	if err == nil || err.Error() != want || !errors.Is(err, errIssuerDown) {
		t.Fatalf("expired, issuer down: error %v, want %q wrapping the issuer error", err, want)
	}
	// Callers during the backoff get the same error without a new attempt.
	calls := iss.calls.Load()
	if _, err := s.SVID(ctx, w); err == nil || err.Error() != want || iss.calls.Load() != calls {
		t.Fatalf("during backoff: %v (Mint calls %d -> %d)", err, calls, iss.calls.Load())
	}

	// The issuer comes back: the next call after the backoff gets a fresh SVID.
	iss.down.Store(false)
	_, retryAt := s.entryState(idBilling)
	clock.Add(retryAt.Sub(clock.Now()))
	got, err := s.SVID(ctx, w)
	if err != nil || got == first || !clock.Now().Before(got.Certificates[0].NotAfter) {
		t.Fatalf("after recovery: %v, %v", got, err)
	}
	if failures, _ := s.entryState(idBilling); failures != 0 {
		t.Errorf("failures %d after recovery, want 0", failures)
	}
}
