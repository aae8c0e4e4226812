package proxy

import (
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// connCounts counts open client connections, in total and per identity.
type connCounts struct {
	mu    sync.Mutex
	total int
	perID map[spiffeid.ID]int

	// Connections without an identity, per uid (conns_unattested.go).
	unattested map[uint32]int
}

// open counts a new connection unless max are open (max < 0: no limit).
func (cc *connCounts) open(max int) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if max >= 0 && cc.total >= max {
		return false
	}
	cc.total++
	return true
}

// addID counts a connection for id unless it has max open.
func (cc *connCounts) addID(id spiffeid.ID, max int) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if max >= 0 && cc.perID[id] >= max {
		return false
	}
	if cc.perID == nil {
		cc.perID = make(map[spiffeid.ID]int)
	}
	cc.perID[id]++
	return true
}

// close uncounts a connection, and its identity when it had one.
func (cc *connCounts) close(id spiffeid.ID) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.total--
	if id.IsZero() {
		return
	}
	if cc.perID[id]--; cc.perID[id] <= 0 {
		delete(cc.perID, id)
	}
}
