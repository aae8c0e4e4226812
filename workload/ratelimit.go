package workload

import (
	"fmt"
	"sync"
	"time"
)

// Defaults of the per-uid attestation rate (THREATS F12).
const (
	// DefaultRatePerUID is how many new processes of one uid may be
	// attested per second, sustained. An attestation that hashes nothing
	// costs procmesh about 0.4 ms, less than the fork and exec it takes
	// to make a new process, so this mostly bounds hashing (below).
	DefaultRatePerUID = 100
	// DefaultBurstPerUID is how many may be attested at once: a
	// pre-forking server starting 1000 workers is not refused.
	DefaultBurstPerUID = 1000
	// HashBytesPerToken: an attestation that reads an executable to hash it
	// costs one more token per this many bytes read (a 128 MiB executable
	// costs 129 tokens in all, taken as debt that later attestations of
	// the uid wait out), so a uid's budget bounds the hashing it can cause,
	// not just its attestations: at the default rate, 100 MiB/s, under a
	// third of a core at the 350 MB/s SHA-256 measured on a 2-core EPYC
	// (BenchmarkAttestSparseTouched).
	HashBytesPerToken = 1 << 20
	// maxBuckets bounds the per-uid map. When it is full, buckets that
	// have refilled (and so equal a fresh one) are dropped; uids beyond
	// that share one bucket, so many uids (a user namespace's subordinate
	// range) cannot reset their budget by pushing buckets out.
	maxBuckets = 4096
)

// RateLimitError refuses a new process whose uid has used its attestation
// budget. A process already attested is not limited: its connections are
// cache hits.
type RateLimitError struct {
	UID        uint32
	Rate       float64       // tokens per second (attest.rate_per_uid)
	Burst      int           // attest.burst_per_uid
	RetryAfter time.Duration // when one token will be there again
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("workload: uid %d starts new processes that connect faster than allowed "+
		"(attest.rate_per_uid: %g per second, attest.burst_per_uid: %d; hashing an executable costs one more per MiB read); "+
		"retry in %s, or raise the limits",
		e.UID, e.Rate, e.Burst, e.RetryAfter.Round(time.Millisecond))
}

// uidLimiter is a token bucket per uid. take spends one token before an
// attestation, charge spends more afterwards for the bytes it hashed and
// may leave the bucket in debt, which later attestations wait out.
type uidLimiter struct {
	rate  float64 // <= 0: no limit
	burst float64

	mu       sync.Mutex
	buckets  map[uint32]*bucket
	overflow bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newUIDLimiter(rate float64, burst int) *uidLimiter {
	return &uidLimiter{rate: rate, burst: float64(burst), buckets: make(map[uint32]*bucket)}
}

// refill brings b to now.
func (l *uidLimiter) refill(b *bucket, now time.Time) {
	if b.at.IsZero() {
		b.tokens, b.at = l.burst, now
		return
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.at = now
	}
}

// bucket returns uid's bucket, refilled to now. l.mu is held.
func (l *uidLimiter) bucket(uid uint32, now time.Time) *bucket {
	b := l.buckets[uid]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			for id, old := range l.buckets {
				if l.refill(old, now); old.tokens >= l.burst {
					delete(l.buckets, id)
				}
			}
		}
		if len(l.buckets) >= maxBuckets {
			b = &l.overflow
		} else {
			b = &bucket{}
			l.buckets[uid] = b
		}
	}
	l.refill(b, now)
	return b
}

// take spends one token of uid's, or returns a *RateLimitError.
func (l *uidLimiter) take(uid uint32, now time.Time) error {
	if l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(uid, now)
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
		return &RateLimitError{UID: uid, Rate: l.rate, Burst: int(l.burst), RetryAfter: wait}
	}
	b.tokens--
	return nil
}

// charge spends the tokens for hashed bytes read to hash.
func (l *uidLimiter) charge(uid uint32, hashed int64, now time.Time) {
	if l.rate <= 0 || hashed <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bucket(uid, now).tokens -= float64((hashed + HashBytesPerToken - 1) / HashBytesPerToken)
}
