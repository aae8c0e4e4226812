package admin

import (
	"cmp"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Status is what the status page shows and /status.json serves.
type Status struct {
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	Now         time.Time `json:"now"`
	ConfigPath  string    `json:"config_path"`
	Provider    string    `json:"provider"`
	TrustDomain string    `json:"trust_domain"`
	// Generation counts the configs applied: 1 at start, one more per
	// applied reload.
	Generation int     `json:"generation"`
	Ready      []Check `json:"ready"`
	// Identities are the SPIFFE IDs with a process in the cache, an SVID
	// or an upstream pool.
	Identities []Identity `json:"identities"`
	// Unmatched are attested processes with no SPIFFE ID.
	Unmatched []Process `json:"unmatched"`
	Refusals  []Refusal `json:"refusals"` // newest first
	Reloads   []Reload  `json:"reloads"`  // newest first
}

// Identity is one SPIFFE ID and what procmesh holds for it.
type Identity struct {
	ID         string     `json:"spiffe_id"`
	SVIDExpiry *time.Time `json:"svid_expiry,omitempty"`
	Processes  []Process  `json:"processes"`
	Pools      []Pool     `json:"pools"`
}

// Process is an attested process.
type Process struct {
	PID    int32  `json:"pid"`
	Exe    string `json:"exe"`
	UID    uint32 `json:"uid"`
	Cgroup string `json:"cgroup,omitempty"`
}

// Pool is an upstream pool of one identity.
type Pool struct {
	Route    string `json:"route"`
	Protocol string `json:"protocol"`
}

// Refusal is a caller that got no identity.
type Refusal struct {
	At     time.Time `json:"at"`
	PID    int32     `json:"pid"`
	Exe    string    `json:"exe,omitempty"`
	UID    uint32    `json:"uid"`
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
	Route  string    `json:"route,omitempty"`
}

// Reload is one config reload.
type Reload struct {
	At         time.Time `json:"at"`
	Reason     string    `json:"reason"`
	Applied    bool      `json:"applied"`
	Error      string    `json:"error,omitempty"`
	Generation int       `json:"generation"`
}

// Check is one readiness condition.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Info is what the Monitor does not know of itself.
type Info struct {
	Started                           time.Time
	ConfigPath, Provider, TrustDomain string
}

// Status assembles the status from the Sources, the refusals and reloads
// seen and checks.
func (m *Monitor) Status(info Info, checks []Check) *Status {
	src := m.sources()
	st := &Status{Version: m.version, Started: info.Started, Now: src.Now(), ConfigPath: info.ConfigPath,
		Provider: info.Provider, TrustDomain: info.TrustDomain, Ready: checks}
	ids := map[string]*Identity{}
	get := func(id spiffeid.ID) *Identity {
		s := id.String()
		if ids[s] == nil {
			ids[s] = &Identity{ID: s}
		}
		return ids[s]
	}
	if src.Processes != nil {
		for _, cp := range src.Processes() {
			p := Process{PID: cp.Process.PID, Exe: cp.Process.ExePath, UID: cp.Process.UID, Cgroup: cp.Process.Cgroup}
			if cp.ByProvider && src.Provided != nil {
				cp.ID, _ = src.Provided(cp.Fingerprint)
			}
			if cp.ID.IsZero() {
				st.Unmatched = append(st.Unmatched, p)
				continue
			}
			id := get(cp.ID)
			id.Processes = append(id.Processes, p)
		}
	}
	var expiries map[spiffeid.ID]time.Time
	switch {
	case src.Store != nil:
		expiries = src.Store().Expiries
	case src.SPIRE != nil:
		expiries = src.SPIRE().Expiries
	}
	for id, at := range expiries {
		at := at
		get(id).SVIDExpiry = &at
	}
	if src.Pools != nil {
		for _, p := range src.Pools() {
			id := get(p.ID)
			id.Pools = append(id.Pools, Pool{Route: p.Route, Protocol: p.Protocol})
		}
	}
	for _, id := range ids {
		slices.SortFunc(id.Processes, func(a, b Process) int { return cmp.Compare(a.PID, b.PID) })
		slices.SortFunc(id.Pools, func(a, b Pool) int { return cmp.Compare(a.Route, b.Route) })
		st.Identities = append(st.Identities, *id)
	}
	slices.SortFunc(st.Identities, func(a, b Identity) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Unmatched, func(a, b Process) int { return cmp.Compare(a.PID, b.PID) })
	m.mu.Lock()
	st.Generation = m.generation
	st.Refusals = slices.Clone(m.recent)
	st.Reloads = slices.Clone(m.history)
	m.mu.Unlock()
	slices.Reverse(st.Refusals)
	slices.Reverse(st.Reloads)
	return st
}
