package proxy

import (
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/proxy/internal/upstream"
)

// Stats counts how the main socket's HTTP/1.1 requests were served.
type Stats struct {
	// FastRequests is the requests the HTTP/1.1 fast path forwarded.
	FastRequests int64
	// Handoffs is the connections the fast path handed to net/http, at
	// the first request it does not serve itself (h1fast.go).
	Handoffs int64
	// Dials is the upstream connections dialled (TCP and QUIC, successful
	// or not) per route name since the Server started.
	Dials map[string]uint64
	// Preconnects counts the preconnections of each route that has them
	// (routes[].preconnect), by how they ended.
	Preconnects map[string]PreconnectStats
}

// PreconnectStats counts one route's preconnections: Used, Expired
// (closed unused after their wait), Failed.
type PreconnectStats = upstream.PreconnectStats

// stats are the Server's counters behind Stats.
type stats struct {
	fastRequests, handoffs atomic.Int64
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	return Stats{FastRequests: s.stats.fastRequests.Load(), Handoffs: s.stats.handoffs.Load(), Dials: s.pools.Dials(),
		Preconnects: s.pools.Preconnects()}
}

// Pool is one upstream pool: the connections of one identity to one route.
type Pool struct {
	ID       spiffeid.ID
	Route    string
	Protocol string
	// Open and Idle are the HTTP/1.1 connections of an http1 route's
	// pool; 0 for the other protocols.
	Open, Idle int
}

// Pools lists the upstream pools open now.
func (s *Server) Pools() []Pool {
	var out []Pool
	s.pools.Each(func(id spiffeid.ID, r *Route, open, idle int) {
		out = append(out, Pool{ID: id, Route: r.Name, Protocol: r.Protocol, Open: open, Idle: idle})
	})
	return out
}
