package admin

import "sync"

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
	mu   sync.Mutex
	seen map[string]struct{}
}

func newLabelCap(max int) *labelCap {
	return &labelCap{max: max, seen: make(map[string]struct{})}
}

// value returns the label value for id ("" = none).
func (c *labelCap) value(id string) string {
	if id == "" {
		return noneLabel
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[id]; ok {
		return id
	}
	if len(c.seen) >= c.max {
		return otherLabel
	}
	c.seen[id] = struct{}{}
	return id
}
