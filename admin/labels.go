package admin

import (
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// otherLabel is the label value of SPIFFE IDs beyond the cap, noneLabel of
// events without one.
const (
	otherLabel = "other"
	noneLabel  = "none"
)

// labelCap hands out label values for SPIFFE IDs: the first max distinct
// IDs keep their own value for the life of the process, later ones get
// "other", so the series count is bounded whatever processes connect.
type labelCap struct {
	max  int
	mu   sync.RWMutex
	seen map[spiffeid.ID]string
}

func newLabelCap(max int) *labelCap {
	return &labelCap{max: max, seen: make(map[spiffeid.ID]string)}
}

// value returns the label value for id (zero: none).
func (c *labelCap) value(id spiffeid.ID) string {
	if id.IsZero() {
		return noneLabel
	}
	c.mu.RLock()
	v, ok := c.seen[id]
	c.mu.RUnlock()
	if ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.seen[id]; ok {
		return v
	}
	if len(c.seen) >= c.max {
		return otherLabel
	}
	v = id.String()
	c.seen[id] = v
	return v
}
