package spire

import (
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Stats is what the Source holds now, for metrics and the status page.
type Stats struct {
	// Streams is the processes with an open stream to the agent.
	Streams int
	// AgentUp is false from a stream error until a stream answers again;
	// DownSince and LastError then say since when and why.
	AgentUp   bool
	DownSince time.Time
	LastError string
	// Bundles is true once the agent sent its trust bundles.
	Bundles bool
	// Expiries is the newest SVID's NotAfter per SPIFFE ID.
	Expiries map[spiffeid.ID]time.Time
}

// Stats reports the streams, the agent's state and the SVIDs held.
func (s *Source) Stats() Stats {
	st := Stats{Expiries: map[spiffeid.ID]time.Time{}}
	select {
	case <-s.bundleReady:
		st.Bundles = true
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Streams = len(s.procs)
	st.AgentUp = s.agent.downSince.IsZero()
	st.DownSince = s.agent.downSince
	if s.agent.lastErr != nil {
		st.LastError = s.agent.lastErr.Error()
	}
	for id, sv := range s.svids {
		st.Expiries[id] = sv.Certificates[0].NotAfter
	}
	return st
}
