package suite

import (
	"context"
	"fmt"
	"math"
	"sync"
	"syscall"
	"time"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/procstat"
	"github.com/procmesh/procmesh/bench/report"
)

func (e *env) memoryPlan() *plan {
	sc := &report.Scenario{ID: "memory", Title: "Memory",
		How: fmt.Sprintf("Each proxy is restarted fresh. *Idle*: VmRSS of all its processes 1 s after start and one request. "+
			"*At %.0f req/s*: the highest VmRSS sampled every 100 ms during %s of the fixed-rate load. "+
			"*Per idle connection*: the proxy restarted, then %d client connections opened on the Unix socket, one request each, then left open; (RSS with them − RSS before) / count. "+
			"*PSS*: the same, counting each shared page once (divided among the processes that map it; nginx's RSS counts its master's and workers' shared pages once per process). "+
			"*Per cached process* (procmesh only, first trial only: it varies by less than 0.1 KiB between runs and takes the longest): restarted, then distinct live processes (a small C program forks them; each connects, makes one request, closes and sleeps) — (RSS after − RSS before) / count. "+
			"*Anonymous RSS*: RssAnon of the same samples (the highest during the load): heap, stacks and other pages the proxy wrote privately. "+
			"The rest of RSS is file-backed, mostly the proxy's binary: on each page fault the kernel also maps the neighbouring pages already in the page cache (fault-around), so that part follows how much of the binary is cached (earlier runs, other processes) more than what the proxy does.",
			e.cfg.Rate, e.cfg.RateDuration, e.idleConns())}
	if n := e.idleConns(); n < e.cfg.IdleConns {
		sc.Notes = append(sc.Notes, fmt.Sprintf("%d idle connections instead of %d: RLIMIT_NOFILE's hard limit cannot be raised here (no CAP_SYS_RESOURCE), and HAProxy needs two descriptors per connection slot.", n, e.cfg.IdleConns))
	}
	idle := newMetric("rss_idle", "RSS idle", "MB", "lower", report.HAProxy)
	atRate := newMetric("rss_rate", fmt.Sprintf("RSS at %.0f req/s", e.cfg.Rate), "MB", "lower", report.HAProxy)
	perConn := newMetric("conn_bytes", "per idle client connection", "KiB/conn", "lower", report.HAProxy)
	perProc := newMetric("proc_bytes", "per cached process", "KiB/process", "lower")
	pssIdle := newMetric("pss_idle", "PSS idle", "MB", "lower", report.HAProxy)
	pssRate := newMetric("pss_rate", fmt.Sprintf("PSS at %.0f req/s", e.cfg.Rate), "MB", "lower", report.HAProxy)
	anonIdle := newMetric("anon_idle", "anonymous RSS idle", "MB", "lower", report.HAProxy)
	anonRate := newMetric("anon_rate", fmt.Sprintf("anonymous RSS at %.0f req/s", e.cfg.Rate), "MB", "lower", report.HAProxy)
	sc.Metrics = []*report.Metric{idle, atRate, perConn, perProc, pssIdle, pssRate, anonIdle, anonRate}
	for _, m := range sc.Metrics {
		m.SetNA(report.Direct, "no proxy process")
	}
	for _, c := range e.contenders {
		if c.name != report.Procmesh && c.in("memory") {
			perProc.SetNA(c.name, "no per-process state")
		}
	}
	if e.manyExe == "" {
		perProc.SetNA(report.Procmesh, "the C helper could not be compiled (is cc installed?)")
	}
	var steps []step
	// The procmesh variants (-variants) run procmesh's binary too: left
	// running, they would share its pages, and procmesh's PSS would be
	// lower than on a node, where one procmesh runs. No scenario after
	// this one uses them.
	var variants []*contestant
	for _, c := range e.contenders {
		if !c.in("memory") && c.proc != nil {
			variants = append(variants, c)
		}
	}
	if len(variants) > 0 {
		sc.Notes = append(sc.Notes, fmt.Sprintf("The %d procmesh variants were stopped first: they map the same binary, and would share its pages with procmesh.", len(variants)))
		steps = append(steps, step{label: "memory, stopping the procmesh variants", run: func() string {
			for _, c := range variants {
				c.stop()
			}
			return fmt.Sprintf("%d stopped", len(variants))
		}})
	}
	for t := range e.cfg.MemTrials {
		for _, c := range e.rotate("memory", t) {
			if c.isDirect() {
				continue
			}
			steps = append(steps, step{
				label: fmt.Sprintf("memory, %s restarted, idle, trial %d/%d", c.name, t+1, e.cfg.MemTrials),
				run: func() string {
					if err := c.restart(); err != nil {
						e.errorf("memory, %s: restart: %v", c.name, err)
						idle.Add(c.name, math.NaN())
						pssIdle.Add(c.name, math.NaN())
						anonIdle.Add(c.name, math.NaN())
						return "error: " + err.Error()
					}
					sleep(e.ctx, time.Second)
					e.oneRequest(c)
					sleep(e.ctx, 300*time.Millisecond)
					s, err := e.rd.Sample(e.pids(c))
					if err != nil {
						idle.Add(c.name, math.NaN())
						pssIdle.Add(c.name, math.NaN())
						anonIdle.Add(c.name, math.NaN())
						return "error: " + err.Error()
					}
					idle.Add(c.name, mb(s.RSS))
					pssIdle.Add(c.name, mb(s.PSS))
					anonIdle.Add(c.name, mb(s.Anon))
					return fmt.Sprintf("RSS %.2f MB (anonymous %.2f MB), PSS %.2f MB in %d process(es)", mb(s.RSS), mb(s.Anon), mb(s.PSS), s.Procs)
				},
			})
			steps = append(steps, step{
				label: fmt.Sprintf("memory, %s at %.0f req/s, trial %d/%d", c.name, e.cfg.Rate, t+1, e.cfg.MemTrials),
				run: func() string {
					pids := e.pids(c)
					var mu sync.Mutex
					var peak, peakPSS, peakAnon uint64
					load.RunOpen(e.ctx, load.Open{Dial: e.dialer(c, "http"), Request: load.Request(peers.HostH1, "/1k"),
						Rate: e.cfg.Rate, Conns: e.cfg.RateConns, Warmup: e.cfg.RateWarmup, Duration: e.cfg.RateDuration,
						SampleEvery: 100 * time.Millisecond,
						Sample: func() {
							if s, err := e.rd.Sample(pids); err == nil {
								mu.Lock()
								peak = max(peak, s.RSS)
								peakPSS = max(peakPSS, s.PSS)
								peakAnon = max(peakAnon, s.Anon)
								mu.Unlock()
							}
						}})
					if peak == 0 {
						atRate.Add(c.name, math.NaN())
						pssRate.Add(c.name, math.NaN())
						anonRate.Add(c.name, math.NaN())
						return "error: no sample"
					}
					atRate.Add(c.name, mb(peak))
					pssRate.Add(c.name, mb(peakPSS))
					anonRate.Add(c.name, mb(peakAnon))
					return fmt.Sprintf("peak RSS %.2f MB (anonymous %.2f MB), PSS %.2f MB", mb(peak), mb(peakAnon), mb(peakPSS))
				},
			})
			steps = append(steps, step{
				label: fmt.Sprintf("memory, %s restarted, with %d idle connections, trial %d/%d", c.name, e.idleConns(), t+1, e.cfg.MemTrials),
				run: func() string {
					before, err := e.freshBaseline(c)
					if err != nil {
						perConn.Add(c.name, math.NaN())
						return "error: " + err.Error()
					}
					want := e.idleConns()
					conns, firstErr := e.openIdle(c, want)
					sleep(e.ctx, time.Second)
					after, err := e.rd.Sample(e.pids(c))
					for _, cn := range conns {
						cn.Close()
					}
					if err != nil || len(conns) < min(want, 100) {
						perConn.Add(c.name, math.NaN())
						e.errorf("memory, %s: %d of %d idle connections opened: %s %v", c.name, len(conns), want, firstErr, err)
						return fmt.Sprintf("error: %d of %d connections (%s)", len(conns), want, firstErr)
					}
					per := (float64(after.RSS) - float64(before.RSS)) / float64(len(conns)) / 1024
					perConn.Add(c.name, per)
					if len(conns) < want {
						// Still a figure per connection, over fewer of them.
						note := fmt.Sprintf("only %d of %d connections were accepted (%s); the figure is over those", len(conns), want, firstErr)
						perConn.Row(c.name).Note = note
						e.errorf("memory, %s: %s", c.name, note)
					}
					return fmt.Sprintf("%.1f KiB/conn (%d conns, RSS %.1f → %.1f MB)", per, len(conns), mb(before.RSS), mb(after.RSS))
				},
			})
			if c.name == report.Procmesh && e.manyExe != "" && t == 0 {
				steps = append(steps, step{
					label: fmt.Sprintf("memory, procmesh restarted, caching up to %d processes", e.cfg.CachedProcs),
					run: func() string {
						r, err := e.cachedProcesses(c)
						if err != nil {
							perProc.Add(c.name, math.NaN())
							e.errorf("memory, cached processes: %v", err)
							return "error: " + err.Error()
						}
						perProc.Add(c.name, r.perKiB)
						perProc.Row(c.name).Note = fmt.Sprintf("%d distinct processes cached (asked for %d)", r.ok, e.cfg.CachedProcs)
						return fmt.Sprintf("%.1f KiB/process (%d processes cached, %d failed; RSS %.1f → %.1f MB)", r.perKiB, r.ok, r.failed, mb(r.before), mb(r.after))
					},
				})
			}
		}
	}
	e.markNA("memory", sc.Metrics...)
	return &plan{sc: sc, steps: steps}
}

// freshBaseline restarts c, makes one request and returns its memory once
// settled: each memory figure starts from a process that has not yet held
// what the previous figure left behind.
func (e *env) freshBaseline(c *contestant) (procstat.Sample, error) {
	if err := c.restart(); err != nil {
		return procstat.Sample{}, err
	}
	sleep(e.ctx, 500*time.Millisecond)
	if err := e.oneRequest(c); err != nil {
		return procstat.Sample{}, err
	}
	sleep(e.ctx, 500*time.Millisecond)
	return e.rd.Sample(e.pids(c))
}

// idleConns is how many idle connections the memory figure opens: the
// configured count, or fewer when RLIMIT_NOFILE cannot be raised that far
// (HAProxy reserves two descriptors per connection slot).
func (e *env) idleConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return e.cfg.IdleConns
	}
	return max(0, min(e.cfg.IdleConns, int(lim.Max)/2-1000))
}

func mb(b uint64) float64 { return float64(b) / 1e6 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
