package workload

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
)

// Provider is a Source that decides itself which SPIFFE ID a process has
// (package spire: SPIRE's agent attests the PID). When the Source given to
// New implements it, the Resolver asks it on every Resolve instead of
// matching the registration entries, which are then unused.
type Provider interface {
	// Identify returns the SPIFFE ID of the running process fp (attested
	// by procmesh as fp), waiting a bounded time for a first answer. No
	// identity for the process is an error wrapping ErrNoIdentity; a
	// process that is no longer fp, one wrapping attest.ErrPeerGone.
	Identify(ctx context.Context, fp attest.Fingerprint) (spiffeid.ID, error)
	// Current is the provider's latest answer for fp, without waiting.
	Current(fp attest.Fingerprint) (spiffeid.ID, error)
	// Name describes the provider for refusals ("the SPIRE agent at ...").
	Name() string
}

// ErrNoIdentity is wrapped by a Provider's error for a process it issues
// no identity for.
var ErrNoIdentity = errors.New("no identity issued")

// providerEntry is the registry.Entry of an identity a Provider gave: the
// entry lives in the provider, so it has no selectors and no index.
func providerEntry(id spiffeid.ID) registry.Entry {
	return registry.Entry{ID: id, Index: -1}
}

// resolveByProvider finishes Resolve with a Provider: the provider attests
// the PID itself, after procmesh did, so the process must still be the one
// procmesh fingerprinted, and still run what it ran at connect() (the
// connect-time record), once the provider has answered: a process that
// exec'd before the provider read it is refused (THREATS I11).
func (r *Resolver) resolveByProvider(ctx context.Context, p Provider, peer *attest.Peer, proc *attest.Process) (*Identity, error) {
	id, err := p.Identify(ctx, proc.Fingerprint)
	if errors.Is(err, ErrNoIdentity) {
		return nil, &NoMatchError{Process: r.att.WithNames(proc), Provider: p.Name(), Reason: err.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	now, err := r.att.Fingerprint(peer)
	if err != nil {
		return nil, fmt.Errorf("workload: after %s answered: %w", p.Name(), err)
	}
	if now != proc.Fingerprint {
		// Its connect-time record was checked against proc.Fingerprint.
		return nil, fmt.Errorf("workload: process %d changed while %s attested it (%w); a process that execs after connecting does not get the identity of what it exec'd",
			proc.PID, p.Name(), attest.ErrPeerGone)
	}
	return &Identity{Process: proc, Entry: providerEntry(id)}, nil
}

// rematchByProvider is Rematch with a Provider: the provider's latest
// answer for the process.
func (r *Resolver) rematchByProvider(p Provider, id *Identity) (*Identity, error) {
	cur, err := p.Current(id.Process.Fingerprint)
	if errors.Is(err, ErrNoIdentity) {
		return nil, &NoMatchError{Process: r.att.WithNames(id.Process), Provider: p.Name(), Reason: err.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	if cur == id.ID() {
		return id, nil
	}
	return &Identity{Process: id.Process, Entry: providerEntry(cur)}, nil
}

// ProviderDecides reports whether SPIFFE IDs come from a Provider rather
// than the registration entries (whose Entries are then empty).
func (r *Resolver) ProviderDecides() bool { return r.provider != nil }
