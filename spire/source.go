package spire

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	delegatedidentityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// Options configure a Source.
type Options struct {
	// AdminSocket is the path of the agent's admin socket
	// (admin_socket_path in its config). Required.
	AdminSocket string
	// FirstMessageTimeout bounds the wait for the agent's first answer
	// about a new process. Default 5s.
	FirstMessageTimeout time.Duration
	// Static are trust bundles added to SPIRE's (trust_bundles: in the
	// config, for upstreams outside SPIRE). Nil: none.
	Static *x509bundle.Set
	// Alive reports whether the process fp still runs the same image
	// ((*attest.Attestor).Alive). Required.
	Alive func(attest.Fingerprint) bool
	// BackoffMin and BackoffMax bound the wait before a stream
	// re-subscribes after an error (doubling, with jitter). Defaults 200ms
	// and 5s.
	BackoffMin, BackoffMax time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives stream events. Default: no logging.
	Logger zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.FirstMessageTimeout <= 0 {
		o.FirstMessageTimeout = 5 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 200 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(5*time.Second, o.BackoffMin)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Static == nil {
		o.Static = x509bundle.NewSet()
	}
	return o
}

// Source is a tlsconf.Source and workload.Provider over a SPIRE agent's
// Delegated Identity API. It is safe for concurrent use.
type Source struct {
	opts   Options
	conn   *grpc.ClientConn
	client delegatedidentityv1.DelegatedIdentityClient
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	procs  map[procKey]*proc
	svids  map[spiffeid.ID]*x509svid.SVID // newest per ID, from any stream
	agent  agentState
	closed bool

	// beforeSubscribe, set by tests only, runs before each subscription.
	beforeSubscribe func(attest.Fingerprint)

	bundles     bundleView
	bundleReady chan struct{}
	bundleOnce  sync.Once
}

var (
	_ tlsconf.Source    = (*Source)(nil)
	_ workload.Provider = (*Source)(nil)
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
	pin    *pin
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

// agentState is what procmesh knows of the agent's availability.
type agentState struct {
	lastErr   error
	downSince time.Time // zero while streams succeed
}

// New dials the agent's admin socket (lazily: it may come up later) and
// starts the bundle subscription. It waits up to FirstMessageTimeout for
// the first bundles and logs a warning when they do not come.
func New(opts Options) (*Source, error) {
	opts = opts.withDefaults()
	if opts.AdminSocket == "" {
		return nil, errors.New("spire: no admin socket path")
	}
	if opts.Alive == nil {
		return nil, errors.New("spire: Options.Alive is required")
	}
	conn, err := grpc.NewClient("unix://"+opts.AdminSocket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Bundles with many federated trust domains are large.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
	if err != nil {
		return nil, fmt.Errorf("spire: admin socket %s: %w", opts.AdminSocket, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{
		opts:        opts,
		conn:        conn,
		client:      delegatedidentityv1.NewDelegatedIdentityClient(conn),
		ctx:         ctx,
		cancel:      cancel,
		procs:       make(map[procKey]*proc),
		svids:       make(map[spiffeid.ID]*x509svid.SVID),
		bundleReady: make(chan struct{}),
	}
	s.bundles.static = opts.Static
	s.bundles.set(x509bundle.NewSet())
	s.wg.Add(1)
	go s.bundleLoop()
	t := time.NewTimer(opts.FirstMessageTimeout)
	defer t.Stop()
	select {
	case <-s.bundleReady:
	case <-t.C:
		opts.Logger.Warn().Str("admin_socket", opts.AdminSocket).Dur("waited", opts.FirstMessageTimeout).
			Msg("no trust bundle from the SPIRE agent yet: upstream handshakes fail until it answers")
	}
	return s, nil
}

// Name describes the agent for refusals.
func (s *Source) Name() string { return "the SPIRE agent at " + s.opts.AdminSocket }

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
		pn.close() // another caller started it meanwhile
		return p, err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	p := &proc{fp: fp, pin: pn, cancel: cancel, first: make(chan struct{})}
	s.procs[key] = p
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		pn.wait()
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
	case p.gone:
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

// expired is the error for an identity whose last SVID has expired. s.mu
// is held.
func (s *Source) expired(id spiffeid.ID, at time.Time) error {
	return fmt.Errorf("spire: the SVID of %s from %s expired at %s and no newer one came: %s",
		id, s.Name(), at.UTC().Format(time.RFC3339), s.agentErr())
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

// agentErr describes the agent's state. s.mu is held.
func (s *Source) agentErr() string {
	if s.agent.downSince.IsZero() {
		return "the agent is reachable"
	}
	return fmt.Sprintf("the agent has been unreachable since %s: %v", s.agent.downSince.UTC().Format(time.RFC3339), s.agent.lastErr)
}

// SVID returns the newest SVID SPIRE issued for w.ID, if still valid.
func (s *Source) SVID(_ context.Context, w tlsconf.Workload) (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.svids[w.ID]
	if sv == nil {
		return nil, fmt.Errorf("spire: no SVID for %s from %s: %s", w.ID, s.Name(), s.agentErr())
	}
	if !s.opts.Now().Before(sv.Certificates[0].NotAfter) {
		return nil, s.expired(w.ID, sv.Certificates[0].NotAfter)
	}
	return sv, nil
}

// Bundles returns SPIRE's trust bundles plus the static ones; a bundle
// update replaces them atomically.
func (s *Source) Bundles() x509bundle.Source { return &s.bundles }

// Close cancels every stream and waits for them. It is idempotent.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return s.conn.Close()
}

// backoff returns the wait before attempt n (0-based): doubling from
// BackoffMin up to BackoffMax, a random point in its upper half, so that
// many streams cut at once by an agent restart do not come back at once.
func (s *Source) backoff(n int) time.Duration {
	d := s.opts.BackoffMin
	for i := 0; i < n && d < s.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.opts.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// agentUp records that a stream got an answer.
func (s *Source) agentUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.agent.downSince.IsZero() {
		s.opts.Logger.Info().Str("admin_socket", s.opts.AdminSocket).
			Dur("down_for", s.opts.Now().Sub(s.agent.downSince)).Msg("SPIRE agent answers again")
	}
	s.agent = agentState{}
}

// agentDown records a stream error.
func (s *Source) agentDown(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent.downSince.IsZero() {
		s.agent.downSince = s.opts.Now()
		s.opts.Logger.Warn().Err(err).Str("admin_socket", s.opts.AdminSocket).
			Msg("SPIRE agent stream failed: still-valid SVIDs keep serving; re-subscribing with backoff")
	}
	s.agent.lastErr = err
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// parseCerts parses concatenated DER certificates.
func parseCerts(der []byte) ([]*x509.Certificate, error) {
	return x509.ParseCertificates(der)
}
