package workload

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
)

// Options tune a Resolver. The zero value of every field is usable.
type Options struct {
	// MaxProcesses bounds the process cache. Default 10000.
	MaxProcesses int
	// TTL is how long an attestation is trusted before /proc is read again.
	// Default 5m.
	TTL time.Duration
	// SweepInterval is how often exited processes are dropped from the
	// cache. Default TTL/4, at most 30s.
	SweepInterval time.Duration
	// DisablePIDFD makes the resolver ignore SO_PEERPIDFD even where the
	// kernel has it (the start-time fallback is then used).
	DisablePIDFD bool
	// RatePerUID is how many new processes of one uid may be attested per
	// second, sustained; an attestation that hashes an executable costs one
	// more per HashBytesPerToken read. A process already in the cache is
	// never limited. Default DefaultRatePerUID (when 0); negative: no
	// limit (THREATS F12).
	RatePerUID float64
	// BurstPerUID is how many attestations one uid may have at once before
	// RatePerUID applies. Default DefaultBurstPerUID (when 0 or negative).
	BurstPerUID int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives cache events at debug level. Default: no logging.
	Logger zerolog.Logger
	// Records, when set, is the kernel's connect-time record (package
	// connrecord): every connection must have one, made by the process
	// SO_PEERCRED names, running the executable it runs when attested
	// (THREATS I11). Nil: attestation reads /proc only, and a process that
	// execs between connect() and attestation is attested as what it
	// exec'd.
	Records Records
}

// Records finds the connect-time record of an accepted connection
// (*connrecord.Recorder).
type Records interface {
	Lookup(c *net.UnixConn) (connrecord.Record, error)
}

var _ Records = (*connrecord.Recorder)(nil)

// Resolver maps Unix-socket peers to workload identities. It is safe for
// concurrent use. Close stops its background sweeper.
type Resolver struct {
	att *attest.Attestor
	src tlsconf.Source
	// provider, when src is one, decides SPIFFE IDs (provider.go).
	provider Provider
	reg      atomic.Pointer[registry.Registry]
	cache    *lru.Cache[attest.Fingerprint, *cached]
	flight   flight[attest.Fingerprint, *cached]
	limit    *uidLimiter
	opts     Options
	hits     atomic.Uint64
	misses   atomic.Uint64
	evicted  atomic.Uint64 // processes pushed out of a full cache

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// cached is one attested process and its match against one registry
// generation. It is immutable once stored; a re-match stores a new value.
type cached struct {
	proc    *attest.Process
	reg     *registry.Registry
	entry   registry.Entry
	matched bool
	expires time.Time
}

// New returns a Resolver over the given attestor, registration entries and
// SVID source, and starts its sweeper.
func New(att *attest.Attestor, reg *registry.Registry, src tlsconf.Source, opts Options) (*Resolver, error) {
	if opts.MaxProcesses <= 0 {
		opts.MaxProcesses = 10000
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = min(opts.TTL/4, 30*time.Second)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RatePerUID == 0 {
		opts.RatePerUID = DefaultRatePerUID
	}
	if opts.BurstPerUID <= 0 {
		opts.BurstPerUID = DefaultBurstPerUID
	}
	c, err := lru.New[attest.Fingerprint, *cached](opts.MaxProcesses)
	if err != nil {
		return nil, fmt.Errorf("workload: process cache: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Resolver{att: att, src: src, cache: c, opts: opts, cancel: cancel, done: make(chan struct{}),
		limit: newUIDLimiter(opts.RatePerUID, opts.BurstPerUID)}
	r.provider, _ = src.(Provider)
	r.reg.Store(reg)
	go r.sweepLoop(ctx)
	return r, nil
}

// SetRegistry swaps the registration entries. Cached attestations are kept
// and re-matched against the new entries on their next use, so a removed
// identity stops resolving at once.
func (r *Resolver) SetRegistry(reg *registry.Registry) { r.reg.Store(reg) }

// Resolve attests the peer of conn and returns its identity. A process that
// matches no entry gets a *NoMatchError; a process that exited before it
// could be attested gets a *PeerError wrapping attest.ErrPeerGone.
func (r *Resolver) Resolve(ctx context.Context, conn *net.UnixConn) (*Identity, error) {
	peer, err := attest.ReadPeer(conn, !r.opts.DisablePIDFD)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	defer peer.Close()
	rec, err := r.record(conn, peer)
	if err != nil {
		return nil, err
	}
	fp, err := r.att.Fingerprint(peer)
	if err != nil {
		return nil, peerError(peer, rec, fmt.Errorf("workload: %w", err))
	}
	if err := checkRecord(rec, fp); err != nil {
		return nil, err
	}
	c, err := r.lookup(peer, fp)
	if err != nil {
		return nil, peerError(peer, rec, err)
	}
	if rec != nil && rec.Traced && !c.proc.Traced {
		c = r.tracedAtConnect(c)
	}
	return r.identify(ctx, peer, c)
}

// ResolvePID attests the process pid by itself: a process that wrote on a
// connection another process made (attest.foreign_writer: attest). It
// did not connect, so no connect-time record describes it: the program
// it runs when attested is the one it gets the identity of, and an exec
// between its write and this attestation is not seen (THREATS I11 holds
// only for the connecting process). Its PID is pinned by a pidfd from
// here on, as at accept.
func (r *Resolver) ResolvePID(ctx context.Context, pid int32) (*Identity, error) {
	peer, err := r.att.PeerFromPID(pid)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	defer peer.Close()
	return r.ResolvePeer(ctx, peer)
}

// ResolvePeer attests the process peer names, with no connect-time record:
// the serving end of a Unix socket procmesh connected to (package inbound),
// whose SO_PEERCRED names the process that called listen(). peer stays
// the caller's to close; its pidfd, when it has one, pins the process.
func (r *Resolver) ResolvePeer(ctx context.Context, peer *attest.Peer) (*Identity, error) {
	fp, err := r.att.Fingerprint(peer)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	c, err := r.lookup(peer, fp)
	if err != nil {
		return nil, err
	}
	return r.identify(ctx, peer, c)
}

// identify turns a matched (or not) attestation into an identity whose
// SVID can be had, or the refusal that lists the process's selectors. With
// a Provider, the provider decides the SPIFFE ID; procmesh still refuses a
// traced process or one running injected code (THREATS I17), which
// entries made in the provider cannot allow.
func (r *Resolver) identify(ctx context.Context, peer *attest.Peer, c *cached) (*Identity, error) {
	if r.provider != nil {
		if has := Needs(c.proc); has.Traced || has.InjectedCode {
			return nil, &NoMatchError{Process: r.att.WithNames(c.proc), Provider: r.provider.Name(),
				Reason: "procmesh refuses a traced process, or one running injected code, whatever " + r.provider.Name() +
					" would issue (THREATS I17): " + strings.Join((&NoMatchError{Process: c.proc}).Reasons(), "; ")}
		}
		return r.resolveByProvider(ctx, r.provider, peer, c.proc)
	}
	if !c.matched {
		// The refusal lists the process's selectors so that an operator can
		// write its entry: names included, even when no entry uses them.
		return nil, noMatch(c.reg, r.att.WithNames(c.proc))
	}
	w := tlsconf.Workload{ID: c.entry.ID, PID: c.proc.PID, Selectors: c.proc.Selectors}
	if err := r.ensureSVID(ctx, w); err != nil {
		return nil, fmt.Errorf("workload: no SVID for %s: %w", c.entry.ID, err)
	}
	return &Identity{Process: c.proc, Entry: c.entry}, nil
}

// prefetcher is a Source that can start an issuance without waiting for it
// (tlsconf.Store).
type prefetcher interface {
	Prefetch(w tlsconf.Workload) error
}

var _ prefetcher = (*tlsconf.Store)(nil)

// ensureSVID makes sure an SVID for w can be had. With a Source that can
// prefetch it does not wait for a new identity's SVID to be minted: the
// caller goes on to dial its upstream meanwhile, and the TLS handshake
// waits for the SVID when it needs the client certificate. It fails when
// the Source knows no SVID can be had (the issuer failed and is backing
// off); the first failure of a new identity's issuance shows in its first
// handshake instead.
func (r *Resolver) ensureSVID(ctx context.Context, w tlsconf.Workload) error {
	if p, ok := r.src.(prefetcher); ok {
		return p.Prefetch(w)
	}
	_, err := r.src.SVID(ctx, w)
	return err
}

// lookup returns the cached attestation for fp, matched against the current
// registry, attesting the process on a miss. Concurrent misses for one
// process share one attestation.
//
// User and group names are looked up only while the registry needs them
// (registry.NeedsNames), and the executable is hashed only when an entry or
// rule pinned with unix:sha256 could match the process
// (registry.NeedsSHA256): an attestation cached without them gets them
// added when a reload starts needing them.
//
// Attesting a new process spends a token of its uid's (RatePerUID, F12);
// a process the cache knows, even one whose attestation has expired, is
// attested again without.
func (r *Resolver) lookup(peer *attest.Peer, fp attest.Fingerprint) (*cached, error) {
	now := r.opts.Now()
	reg := r.reg.Load()
	if c, ok := r.cache.Get(fp); ok && now.Before(c.expires) {
		r.hits.Add(1)
		if c.reg == reg {
			return c, nil
		}
		return r.store(fp, c.proc, reg, c.expires)
	}
	return r.flight.do(fp, func() (*cached, error) {
		_, known := r.cache.Peek(fp)
		if !known {
			if err := r.limit.take(fp.UID, r.opts.Now()); err != nil {
				return nil, err
			}
		}
		r.misses.Add(1)
		reg := r.reg.Load()
		proc, err := r.att.AttestWith(peer, fp, attest.AttestOptions{Names: reg.NeedsNames(), SHA256: reg.NeedsSHA256})
		if err != nil {
			return nil, fmt.Errorf("workload: %w", err)
		}
		if !known {
			r.limit.charge(fp.UID, proc.ExeBytesHashed, r.opts.Now())
		}
		r.opts.Logger.Debug().Int32("pid", proc.PID).Strs("selectors", proc.Selectors).
			Stringer("exe_hash", proc.ExeHash).Msg("attested process")
		return r.store(fp, proc, reg, r.opts.Now().Add(r.opts.TTL))
	})
}

// complete adds to proc what reg matches on and its attestation left out:
// user and group names, the executable's hash.
func (r *Resolver) complete(proc *attest.Process, reg *registry.Registry) (*attest.Process, error) {
	if reg.NeedsNames() {
		proc = r.att.WithNames(proc)
	}
	if proc.ExeHash == attest.HashSkipped && reg.NeedsSHA256(proc.Selectors) {
		p, err := r.att.WithSHA256(proc)
		if err != nil {
			return nil, fmt.Errorf("workload: hash the executable for the new entries: %w", err)
		}
		proc = p
	}
	return proc, nil
}

// store matches proc against reg and caches the result until expires.
func (r *Resolver) store(fp attest.Fingerprint, proc *attest.Process, reg *registry.Registry, expires time.Time) (*cached, error) {
	proc, err := r.complete(proc, reg)
	if err != nil {
		return nil, err
	}
	c := &cached{proc: proc, reg: reg, expires: expires}
	c.entry, c.matched = reg.MatchProcess(proc.Selectors, Needs(proc))
	if r.cache.Add(fp, c) {
		r.evicted.Add(1)
	}
	return c, nil
}

// Stats counts the cache's work since New.
type Stats struct {
	Cached int    // processes in the cache now
	Hits   uint64 // connections resolved from the cache
	Misses uint64 // attestations made (one per process per TTL, F4)
	// Evictions is the processes pushed out because the cache was full
	// (cache.max_processes); exited processes dropped are not counted.
	Evictions uint64
}

// Stats reports cache counters.
func (r *Resolver) Stats() Stats {
	return Stats{Cached: r.cache.Len(), Hits: r.hits.Load(), Misses: r.misses.Load(), Evictions: r.evicted.Load()}
}

// Close stops the sweeper and waits for it. It is idempotent.
func (r *Resolver) Close() error {
	r.once.Do(func() {
		r.cancel()
		<-r.done
	})
	return nil
}

// Rematch checks an identity resolved earlier against the registration
// entries in force now, without attesting again: a connection keeps the
// process it was accepted with, but not an entry a reload removed. It
// returns the identity (with the entry now matching, which may name another
// SPIFFE ID) or a *NoMatchError.
//
// When the entries now match on user or group names, or could match on the
// executable's sha256, and the process was attested without them, the
// returned identity's Process has them added; when the hash can no longer
// be had (the executable changed or the process is gone), the error says
// so.
func (r *Resolver) Rematch(id *Identity) (*Identity, error) {
	if r.provider != nil {
		return r.rematchByProvider(r.provider, id)
	}
	reg := r.reg.Load()
	proc, err := r.complete(id.Process, reg)
	if err != nil {
		return nil, err
	}
	entry, ok := reg.MatchProcess(proc.Selectors, Needs(proc))
	if !ok {
		return nil, noMatch(reg, r.att.WithNames(proc))
	}
	if proc == id.Process && entry.ID == id.Entry.ID && entry.Index == id.Entry.Index {
		return id, nil
	}
	return &Identity{Process: proc, Entry: entry}, nil
}

// noMatch is the refusal of proc, which matches no entry of reg.
func noMatch(reg *registry.Registry, proc *attest.Process) *NoMatchError {
	return &NoMatchError{Process: proc, Refused: reg.Refusing(proc.Selectors, Needs(proc))}
}

// Generation changes whenever SetRegistry installs new entries, so callers
// can skip Rematch while it has not changed.
func (r *Resolver) Generation() *registry.Registry { return r.reg.Load() }
