package tlsconf

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Store is a per-SPIFFE-ID SVID cache over an Issuer. It implements Source;
// Workload.PID and Workload.Selectors are ignored, the cache key is the ID.
//
//   - One issuance in flight per identity: concurrent callers for an ID
//     without a valid SVID wait for the same Mint (F4).
//   - Past half of the lifetime remaining when an SVID was received, SVID
//     returns it at once and renews in a background goroutine (F2).
//   - When the issuer fails, still-valid SVIDs keep being served and the next
//     attempt waits for an exponential backoff with jitter (see backoff);
//     with no valid SVID the error is "tlsconf: no valid SVID for <id>:
//     <issuer error>" (F3).
//
// Issuance is driven by SVID calls: an identity nobody asks for is not renewed.
type Store struct {
	issuer  Issuer
	bundles x509bundle.Source
	opts    StoreOptions

	mu      sync.Mutex
	entries *simplelru.LRU[spiffeid.ID, *entry]
	closed  bool
	waiting int // callers blocked on an issuance
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	counters storeCounters
}

type entry struct {
	id       spiffeid.ID
	svid     *x509svid.SVID // last good SVID, possibly expired
	notAfter time.Time
	renewAt  time.Time
	inflight chan struct{} // closed when the running issuance ends
	claim    *atomic.Bool  // the running issuance's: set by whoever runs it
	err      error         // last issuer error, nil after a success
	failures int           // consecutive failures
	retryAt  time.Time     // no issuance before this after a failure
}

var errStoreClosed = errors.New("tlsconf: SVID store closed")

// NewStore returns a Store minting through issuer and verifying peers with
// bundles (nil means no trust domain is trusted).
func NewStore(issuer Issuer, bundles *x509bundle.Set, opts StoreOptions) *Store {
	opts = opts.withDefaults()
	if bundles == nil {
		bundles = x509bundle.NewSet()
	}
	// NewLRU fails only for a size <= 0, which withDefaults rules out.
	entries, _ := simplelru.NewLRU[spiffeid.ID, *entry](opts.MaxIdentities, nil)
	return &Store{issuer: issuer, bundles: bundles, opts: opts, entries: entries, done: make(chan struct{})}
}

// SVID returns a valid SVID for w.ID, issuing one if needed. It waits for
// an issuance only when no valid SVID is cached, until ctx is done or the
// Store is closed.
func (s *Store) SVID(ctx context.Context, w Workload) (*x509svid.SVID, error) {
	if err := checkWorkload(w); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errStoreClosed
	}
	e, ok := s.entries.Get(w.ID)
	if !ok {
		e = &entry{id: w.ID}
		s.entries.Add(w.ID, e)
	}
	now := s.opts.Now()
	if e.valid(now) {
		if !now.Before(e.renewAt) && e.inflight == nil && !now.Before(e.retryAt) {
			s.startIssue(e)
		}
		return e.svid, nil
	}
	if e.inflight == nil {
		if e.err != nil && now.Before(e.retryAt) {
			return nil, noValidSVID(e)
		}
		s.startIssue(e)
	}
	ch, claim := e.inflight, e.claim
	s.waiting++
	s.mu.Unlock()
	if _, ok := s.issuer.(localIssuer); ok && claim.CompareAndSwap(false, true) {
		// The goroutine started for the issuance has not run yet: run
		// it here rather than wait for it to be scheduled.
		s.issue(e, ch)
	}
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = fmt.Errorf("tlsconf: waiting for an SVID for %s: %w", w.ID, ctx.Err())
	case <-s.done:
		err = errStoreClosed
	}
	s.mu.Lock()
	s.waiting--
	switch {
	case err != nil:
		return nil, err
	case e.valid(s.opts.Now()):
		return e.svid, nil
	case e.err != nil:
		return nil, noValidSVID(e)
	default:
		return nil, fmt.Errorf("tlsconf: no valid SVID for %s: issuer returned an expired SVID", w.ID)
	}
}

// Prefetch makes sure an SVID for w.ID is on its way without waiting for
// it: it starts an issuance when there is no valid SVID and none is in
// flight (or a renewal, as SVID does), so that a caller can do other work —
// dial the upstream, start the TLS handshake — while the SVID is minted,
// and the handshake's SVID call waits only for what is left. It returns an
// error only when no SVID can be had now: w has no usable ID, the Store is
// closed, or the last issuance failed and its backoff has not passed.
func (s *Store) Prefetch(w Workload) error {
	if err := checkWorkload(w); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errStoreClosed
	}
	e, ok := s.entries.Get(w.ID)
	if !ok {
		e = &entry{id: w.ID}
		s.entries.Add(w.ID, e)
	}
	now := s.opts.Now()
	switch {
	case e.inflight != nil:
	case e.valid(now):
		if !now.Before(e.renewAt) && !now.Before(e.retryAt) {
			s.startIssue(e)
		}
	case e.err != nil && now.Before(e.retryAt):
		return noValidSVID(e)
	default:
		s.startIssue(e)
	}
	return nil
}

func (e *entry) valid(now time.Time) bool {
	return e.svid != nil && now.Before(e.notAfter)
}

func noValidSVID(e *entry) error {
	return fmt.Errorf("tlsconf: no valid SVID for %s: %w", e.id, e.err)
}

// startIssue runs one issuance for e in an owned goroutine. s.mu is held and
// s is not closed, so wg.Add never races Close's wg.Wait.
func (s *Store) startIssue(e *entry) {
	ch, claim := make(chan struct{}), new(atomic.Bool)
	e.inflight, e.claim = ch, claim
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if claim.CompareAndSwap(false, true) {
			s.issue(e, ch)
			return
		}
		// A caller of SVID runs it (localIssuer); Close still waits for
		// it through this goroutine.
		<-ch
	}()
}

// issue runs the issuance whose end closes ch.
func (s *Store) issue(e *entry, ch chan struct{}) {
	svid, err := s.issuer.Mint(e.id)
	s.finishIssue(e, ch, svid, err)
}

// localIssuer is an Issuer that mints on this machine's CPU in bounded
// time, without I/O (the builtin CA: about 60 µs). A caller of SVID that
// finds the issuance it needs not yet begun runs it itself: otherwise it
// would wait, besides the mint, for the goroutine started for it to be
// scheduled, which on a busy node or an idle one (a sleeping thread to
// wake) can take longer than the mint. A remote issuer is never run on a
// caller's goroutine: its caller's context must be able to end the wait.
type localIssuer interface {
	Issuer
	mintsLocally()
}

func (s *Store) finishIssue(e *entry, ch chan struct{}, svid *x509svid.SVID, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(ch)
	e.inflight, e.claim = nil, nil
	now := s.opts.Now()
	if err == nil {
		err = checkIssued(e.id, svid, now)
	}
	s.counters.count(e, now, err)
	log := s.opts.Logger.With().Str("spiffe_id", e.id.String()).Logger()
	if err != nil {
		e.failures++
		e.err = err
		delay := backoff(e.failures, s.opts.MinBackoff, s.opts.MaxBackoff, s.opts.Rand())
		e.retryAt = now.Add(delay)
		ev := log.Warn()
		if !e.valid(now) {
			ev = log.Error()
		}
		ev.Err(err).Int("failures", e.failures).Dur("retry_in", delay).
			Bool("serving_previous", e.valid(now)).Msg("SVID issuance failed")
		return
	}
	if e.failures > 0 {
		log.Info().Int("failures", e.failures).Msg("SVID issuance recovered")
	}
	e.svid = svid
	e.notAfter = svid.Certificates[0].NotAfter
	e.renewAt = now.Add(e.notAfter.Sub(now) / 2)
	e.err, e.failures, e.retryAt = nil, 0, time.Time{}
}

// checkIssued rejects an issuer answer that cannot be served for id.
func checkIssued(id spiffeid.ID, svid *x509svid.SVID, now time.Time) error {
	switch {
	case svid == nil || len(svid.Certificates) == 0 || svid.PrivateKey == nil:
		return errors.New("issuer returned an incomplete SVID")
	case svid.ID != id:
		return fmt.Errorf("issuer returned an SVID for %s", svid.ID)
	case !now.Before(svid.Certificates[0].NotAfter):
		return fmt.Errorf("issuer returned an SVID that expired at %s", svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Bundles returns the trust bundles peers are verified with.
func (s *Store) Bundles() x509bundle.Source { return s.bundles }

// SVIDSource returns an x509svid.Source that asks s for id's SVID on every
// call, so each TLS handshake presents the current SVID.
func (s *Store) SVIDSource(id spiffeid.ID) x509svid.Source {
	return SVIDSourceFor(s, Workload{ID: id})
}

// Close releases waiting callers, waits for issuances in flight (an
// Issuer.Mint call cannot be interrupted) and makes SVID fail from then on.
// It is idempotent.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}
