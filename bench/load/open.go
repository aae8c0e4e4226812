package load

import (
	"context"
	"sync"
	"time"
)

// Open configures an open-loop run at a fixed rate: request i is due at
// start + i/Rate whatever happened to the ones before, and its latency is
// measured from that due time (so a proxy that stalls is charged for every
// request that waited, not only the one that was slow). Conns keep-alive
// connections carry the requests; each takes the next due request when it
// is free.
type Open struct {
	Dial     Dialer
	Request  []byte
	Rate     float64 // requests per second
	Conns    int
	Warmup   time.Duration
	Duration time.Duration
	// Sample, when set, is called every SampleEvery during the counted
	// window (the suite samples the proxy's RSS with it).
	Sample      func()
	SampleEvery time.Duration
}

// OpenResult is what an open-loop run measured.
type OpenResult struct {
	Latencies []time.Duration // of requests due in the counted window, completed
	Due       int64           // requests due in the counted window
	All       int64           // completed with 200, warm-up included
	Errors    int64
	Elapsed   time.Duration
	FirstErr  string
}

type job struct {
	due     time.Time
	counted bool
}

// RunOpen runs o and returns the latencies of the requests due inside the
// counted window (after Warmup, for Duration).
func RunOpen(ctx context.Context, o Open) OpenResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	interval := time.Duration(float64(time.Second) / o.Rate)
	total := int((o.Warmup + o.Duration) / interval)
	jobs := make(chan job, total+1)
	errs := &errCounter{}
	lat := make([][]time.Duration, o.Conns)
	completed := make([]int64, o.Conns)
	var wg sync.WaitGroup
	for i := range o.Conns {
		w := &worker{dial: o.Dial, req: o.Request, errs: errs}
		stop := context.AfterFunc(ctx, w.drop)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			defer w.drop()
			w.conn(ctx) // connect before the schedule starts
			for j := range jobs {
				if ctx.Err() != nil {
					return
				}
				if !w.do(ctx) {
					continue
				}
				completed[i]++
				if j.counted {
					lat[i] = append(lat[i], time.Since(j.due))
				}
			}
		}()
	}
	start := time.Now().Add(20 * time.Millisecond)
	countFrom, countTo := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)
	if o.Sample != nil && o.SampleEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sleepCtx(ctx, time.Until(countFrom))
			for ctx.Err() == nil && time.Now().Before(countTo) {
				o.Sample()
				sleepCtx(ctx, o.SampleEvery)
			}
		}()
	}
	var due int64
	for i := range total {
		t := start.Add(time.Duration(i) * interval)
		if d := time.Until(t); d > 0 {
			sleepCtx(ctx, d)
		}
		if ctx.Err() != nil {
			break
		}
		counted := !t.Before(countFrom) && t.Before(countTo)
		if counted {
			due++
		}
		jobs <- job{due: t, counted: counted}
	}
	close(jobs)
	// Give the last requests a bounded time to finish.
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		cancel()
		<-finished
	case <-ctx.Done():
		<-finished
	}
	var all []time.Duration
	var n int64
	for i, l := range lat {
		all = append(all, l...)
		n += completed[i]
	}
	return OpenResult{Latencies: all, Due: due, All: n, Errors: errs.n.Load(), Elapsed: o.Duration, FirstErr: errs.firstErr()}
}
