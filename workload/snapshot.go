package workload

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
)

// CachedProcess is one attested process in the Resolver's cache.
type CachedProcess struct {
	Process *attest.Process
	// ID is the SPIFFE ID of the registration entry it matched; zero when
	// it matched none, or when a Provider decides IDs (ByProvider).
	ID spiffeid.ID
	// Fingerprint is the process's cache key, by which a Provider knows it.
	Fingerprint attest.Fingerprint
	ByProvider  bool
}

// Processes lists the cached processes that still run, most recently used
// first, without touching their recency (for the status page; an exited
// process waits in the cache for the sweeper).
func (r *Resolver) Processes() []CachedProcess {
	keys := r.cache.Keys()
	out := make([]CachedProcess, 0, len(keys))
	for i := len(keys) - 1; i >= 0; i-- {
		c, ok := r.cache.Peek(keys[i])
		if !ok || !r.att.Alive(keys[i]) {
			continue
		}
		cp := CachedProcess{Process: c.proc, Fingerprint: keys[i], ByProvider: r.provider != nil}
		if c.matched && r.provider == nil {
			cp.ID = c.entry.ID
		}
		out = append(out, cp)
	}
	return out
}
