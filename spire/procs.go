package spire

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/internal/pidfd"
	"github.com/procmesh/procmesh/workload"
)

// procKey names a process across execs: its PID and start time.
type procKey struct {
	pid   int32
	start uint64
}

// proc is one attested process and its stream. The fields after first are
// guarded by Source.mu.
type proc struct {
	fp     attest.Fingerprint
	pin    *pidfd.Pin
	cancel context.CancelFunc
	first  chan struct{} // closed at the first answer or when the stream ends for good

	answered bool
	answer   Answer
	err      error // the stream's last error, nil while it is up
	gone     bool  // the process exited or is no longer fp
}

// Answer is what the agent last said about a process.
type Answer struct {
	At            time.Time
	SVIDs         []SVIDInfo // the first is the process's identity; none: no entry matches
	FederatesWith []string
}

// SVIDInfo describes one SVID of an Answer (never its key).
type SVIDInfo struct {
	ID        spiffeid.ID
	Hint      string
	NotBefore time.Time
	ExpiresAt time.Time
}

// Identify returns the SPIFFE ID SPIRE gives the process fp, opening its
// stream if it has none, and waiting up to FirstMessageTimeout for the
// first answer.
func (s *Source) Identify(ctx context.Context, fp attest.Fingerprint) (spiffeid.ID, error) {
	p, err := s.procFor(fp)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if err := s.waitFirst(ctx, p); err != nil {
		return spiffeid.ID{}, err
	}
	return s.current(p)
}

// Current is the latest answer for fp, without waiting.
func (s *Source) Current(fp attest.Fingerprint) (spiffeid.ID, error) {
	s.mu.Lock()
	p, ok := s.procs[procKey{fp.PID, fp.StartTime}]
	s.mu.Unlock()
	if !ok || p.fp != fp {
		return spiffeid.ID{}, fmt.Errorf("spire: process %d has no stream (it exited or changed): %w", fp.PID, attest.ErrPeerGone)
	}
	return s.current(p)
}

// Lookup returns the last answer for fp and whether there is one, for
// `procmesh explain` and tests.
func (s *Source) Lookup(fp attest.Fingerprint) (Answer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.procs[procKey{fp.PID, fp.StartTime}]
	if !ok || p.fp != fp || !p.answered {
		return Answer{}, false
	}
	return p.answer, true
}

// Streams is the number of processes with a stream now.
func (s *Source) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.procs)
}

// procFor returns fp's stream, starting one. A stream for an earlier image
// of the same process (before an exec) is cancelled.
func (s *Source) procFor(fp attest.Fingerprint) (*proc, error) {
	key := procKey{fp.PID, fp.StartTime}
	if p, err := s.existing(key, fp); p != nil || err != nil {
		return p, err
	}
	// Pinning reads /proc: not under s.mu.
	pn, err := pinProcess(fp, s.opts.Alive)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, err := s.existingLocked(key, fp); p != nil || err != nil {
		pn.Close() // another caller started it meanwhile
		return p, err
	}
	if len(s.procs) >= s.opts.MaxStreams {
		pn.Close()
		return nil, fmt.Errorf("spire: %d processes already have a stream to %s (cache.max_processes): process %d is refused until some exit",
			len(s.procs), s.Name(), fp.PID)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p := &proc{fp: fp, pin: pn, cancel: cancel, first: make(chan struct{})}
	s.procs[key] = p
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		pn.Wait()
		cancel()
	}()
	go s.run(ctx, key, p)
	return p, nil
}

// existing returns fp's live stream, if any; it cancels a stream for an
// earlier image of the process.
func (s *Source) existing(key procKey, fp attest.Fingerprint) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.existingLocked(key, fp)
}

func (s *Source) existingLocked(key procKey, fp attest.Fingerprint) (*proc, error) {
	if s.closed {
		return nil, errors.New("spire: source closed")
	}
	p, ok := s.procs[key]
	switch {
	case !ok:
		return nil, nil
	case p.fp == fp && !p.gone:
		return p, nil
	}
	p.cancel()
	delete(s.procs, key)
	return nil, nil
}

func (s *Source) waitFirst(ctx context.Context, p *proc) error {
	t := time.NewTimer(s.opts.FirstMessageTimeout)
	defer t.Stop()
	select {
	case <-p.first:
		return nil
	case <-t.C:
		s.mu.Lock()
		defer s.mu.Unlock()
		if p.answered {
			return nil
		}
		why := "it did not answer"
		if p.err != nil {
			why = p.err.Error()
		}
		return fmt.Errorf("spire: %s gave no answer for process %d within %s (identity.spire.first_answer_timeout): %s",
			s.Name(), p.fp.PID, s.opts.FirstMessageTimeout, why)
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return errors.New("spire: source closed")
	}
}

// current turns p's last answer into its identity.
func (s *Source) current(p *proc) (spiffeid.ID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case p.gone || p.pin.Exited():
		// Exited asks the pidfd itself: the watcher that sets gone may
		// not have run yet when the process has just died and its PID
		// is already another's (THREATS I14).
		return spiffeid.ID{}, fmt.Errorf("spire: process %d exited or changed: %w", p.fp.PID, attest.ErrPeerGone)
	case !p.answered:
		return spiffeid.ID{}, fmt.Errorf("spire: %s has not answered for process %d: %s", s.Name(), p.fp.PID, s.agentErr())
	case len(p.answer.SVIDs) == 0:
		return spiffeid.ID{}, fmt.Errorf("%s issued no SVID for it: no SPIRE registration entry matches it (%w)", s.Name(), workload.ErrNoIdentity)
	case len(p.answer.SVIDs) > 1:
		// SPIRE's order among them is no choice the operator made: as
		// with procmesh's own entries (THREATS I8), a tie is refused.
		ids := make([]string, len(p.answer.SVIDs))
		for i, sv := range p.answer.SVIDs {
			ids[i] = sv.ID.String()
		}
		return spiffeid.ID{}, fmt.Errorf("%s issued %d SVIDs for it (%s), and procmesh acts as exactly one identity: "+
			"make the SPIRE entries' selectors exclusive (%w)", s.Name(), len(ids), strings.Join(ids, ", "), workload.ErrNoIdentity)
	}
	id := p.answer.SVIDs[0].ID
	if sv := s.svids[id]; sv == nil || !s.opts.Now().Before(sv.Certificates[0].NotAfter) {
		return spiffeid.ID{}, s.expired(id, p.answer.SVIDs[0].ExpiresAt)
	}
	return id, nil
}

// forgetUnused drops the SVIDs of ans that no live process's answer has
// any more: an SVID does not outlive the last process SPIRE issued it for
// (THREATS I14). s.mu is held.
func (s *Source) forgetUnused(ans Answer) {
	for _, sv := range ans.SVIDs {
		used := false
		for _, q := range s.procs {
			for _, o := range q.answer.SVIDs {
				if o.ID == sv.ID {
					used = true
				}
			}
		}
		if !used {
			delete(s.svids, sv.ID)
		}
	}
}

// pruneExpired drops the SVIDs that have expired. s.mu is held.
func (s *Source) pruneExpired() {
	now := s.opts.Now()
	for id, sv := range s.svids {
		if !now.Before(sv.Certificates[0].NotAfter) {
			delete(s.svids, id)
		}
	}
}
