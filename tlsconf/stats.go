package tlsconf

import (
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// StoreStats counts a Store's issuances since NewStore and says when the
// SVIDs it holds expire.
type StoreStats struct {
	Mints    uint64 // SVIDs issued for an identity that had no valid one
	Renewals uint64 // SVIDs issued while the previous one was still valid
	Failures uint64 // issuances that failed
	// Expiries is each cached identity's SVID NotAfter (valid or not).
	Expiries map[spiffeid.ID]time.Time
}

// storeCounters are the Store's counters behind StoreStats.
type storeCounters struct {
	mints, renewals, failures atomic.Uint64
}

// count records the outcome of one issuance for e. s.mu is held; e is the
// entry before the outcome is applied.
func (c *storeCounters) count(e *entry, now time.Time, err error) {
	switch {
	case err != nil:
		c.failures.Add(1)
	case e.valid(now):
		c.renewals.Add(1)
	default:
		c.mints.Add(1)
	}
}

// Stats reports the Store's counters and the expiry of every SVID it holds.
func (s *Store) Stats() StoreStats {
	st := StoreStats{Mints: s.counters.mints.Load(), Renewals: s.counters.renewals.Load(),
		Failures: s.counters.failures.Load(), Expiries: map[spiffeid.ID]time.Time{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.entries.Keys() {
		if e, ok := s.entries.Peek(id); ok && e.svid != nil {
			st.Expiries[id] = e.notAfter
		}
	}
	return st
}
