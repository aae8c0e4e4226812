package workload

import (
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
)

// CachedProcess is one attested process in the Resolver's cache.
type CachedProcess struct {
	Process *attest.Process
	// ID is the SPIFFE ID of the registration entry it matched; zero when
	// it matched none, or when a Provider decides IDs.
	ID spiffeid.ID
}

// Processes lists the cached processes, most recently used first, without
// touching their recency. It is for the status page: a process that exited
// stays listed until the sweeper drops it.
func (r *Resolver) Processes() []CachedProcess {
	keys := r.cache.Keys()
	out := make([]CachedProcess, 0, len(keys))
	for i := len(keys) - 1; i >= 0; i-- {
		c, ok := r.cache.Peek(keys[i])
		if !ok {
			continue
		}
		cp := CachedProcess{Process: c.proc}
		if c.matched && r.provider == nil {
			cp.ID = c.entry.ID
		}
		out = append(out, cp)
	}
	return out
}
