package workload

import (
	"context"
	"time"
)

// sweepLoop drops expired entries and entries whose process has exited, so
// the cache holds live processes and a PID's next owner starts clean.
func (r *Resolver) sweepLoop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sweep()
		}
	}
}

// Sweep removes expired and exited processes from the cache now and reports
// how many it removed.
func (r *Resolver) Sweep() int {
	now := r.opts.Now()
	removed := 0
	for _, fp := range r.cache.Keys() {
		c, ok := r.cache.Peek(fp)
		if !ok {
			continue
		}
		if now.Before(c.expires) && r.att.Alive(fp) {
			continue
		}
		if r.cache.Remove(fp) {
			removed++
		}
	}
	if removed > 0 {
		r.opts.Logger.Debug().Int("removed", removed).Int("cached", r.cache.Len()).Msg("swept process cache")
	}
	return removed
}
