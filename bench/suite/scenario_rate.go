package suite

import (
	"fmt"
	"math"
	"time"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/report"
	"github.com/procmesh/procmesh/bench/stats"
)

var ratePercentiles = []float64{50, 90, 99}

func (e *env) ratePlan() *plan {
	sc := &report.Scenario{ID: "rate", Title: fmt.Sprintf("Fixed rate %.0f req/s of 1 KiB: latency and CPU", e.cfg.Rate),
		How: fmt.Sprintf("Open loop: request i is due at start + i/%.0f s whatever happened before, on %d keep-alive connections of the Go client; latency runs from the due time to the last byte of the response, so a stall is charged to every request that waited. "+
			"%s warm-up, then %s counted. Added latency is the contestant's percentile minus direct mTLS's in the same trial. "+
			"Proxy CPU per request is utime+stime (/proc/PID/stat) of all the proxy's processes over the run divided by the requests served (Istio 1.24 publishes ≈200 µs for an Envoy sidecar, ≈60 µs for ztunnel).",
			e.cfg.Rate, e.cfg.RateConns, e.cfg.RateWarmup, e.cfg.RateDuration)}
	abs := make([]*report.Metric, len(ratePercentiles))
	added := make([]*report.Metric, len(ratePercentiles))
	for i, p := range ratePercentiles {
		abs[i] = newMetric(fmt.Sprintf("rate_p%.0f", p), fmt.Sprintf("latency p%.0f", p), "µs", "lower", report.HAProxy, report.Direct)
		// No ratio: a quotient of two small differences, either of which
		// may be negative in a noisy trial, means nothing; the absolute
		// percentiles below carry the ratios.
		added[i] = newMetric(fmt.Sprintf("rate_added_p%.0f", p), fmt.Sprintf("added over direct, p%.0f", p), "µs", "lower")
	}
	cpu := newMetric("rate_cpu", "proxy CPU per request", "µs/req", "lower", report.HAProxy)
	sc.Metrics = append(append(append(sc.Metrics, added...), cpu), abs...)
	e.variantRatios(append([]*report.Metric{cpu}, abs...)...)
	cpu.SetNA(report.Direct, "no proxy process")
	for _, m := range added {
		m.SetNA(report.Direct, "the baseline")
	}
	var steps []step
	for t := range e.cfg.Trials {
		for _, c := range e.rotate("rate", t) {
			steps = append(steps, step{
				label: fmt.Sprintf("%.0f req/s, %s, trial %d/%d", e.cfg.Rate, c.name, t+1, e.cfg.Trials),
				run: func() string {
					meter := e.startCPU(c)
					r := load.RunOpen(e.ctx, load.Open{Dial: e.dialer(c, "http"), Request: load.Request(peers.HostH1, "/1k"),
						Rate: e.cfg.Rate, Conns: e.cfg.RateConns, Warmup: e.cfg.RateWarmup, Duration: e.cfg.RateDuration})
					perReq := meter.perRequest(r.All)
					if !c.isDirect() {
						cpu.Add(c.name, perReq)
					}
					if int64(len(r.Latencies)) < r.Due*9/10 {
						for _, m := range abs {
							m.Add(c.name, math.NaN())
						}
						e.errorf("%.0f req/s, %s, trial %d: %d of %d requests completed: %s", e.cfg.Rate, c.name, t+1, len(r.Latencies), r.Due, r.FirstErr)
						return fmt.Sprintf("error: %d of %d requests completed (%s)", len(r.Latencies), r.Due, r.FirstErr)
					}
					ps := stats.Percentiles(r.Latencies, ratePercentiles...)
					for i, m := range abs {
						m.Add(c.name, us(ps[i]))
					}
					res := fmt.Sprintf("p50 %.0f µs, p90 %.0f µs, p99 %.0f µs", us(ps[0]), us(ps[1]), us(ps[2]))
					if !math.IsNaN(perReq) {
						res += fmt.Sprintf(", %.1f µs CPU/req", perReq)
					}
					if r.Errors > 0 {
						res += fmt.Sprintf(" (%d errors: %s)", r.Errors, r.FirstErr)
					}
					return res
				},
			})
		}
	}
	e.markNA("rate", sc.Metrics...)
	finish := func() {
		for i, m := range abs {
			base := trialsOf(m, report.Direct)
			if base == nil {
				added[i].Ratios = nil
				for _, c := range e.contenders {
					if !c.in("rate") {
						continue
					}
					added[i].SetNA(c.name, "direct mTLS has no figure to subtract")
				}
				continue
			}
			for _, c := range e.contenders {
				if c.isDirect() || !c.ok() || !c.in("rate") {
					continue
				}
				for _, d := range stats.PairedDiffs(trialsOf(m, c.name), base) {
					added[i].Add(c.name, d)
				}
			}
		}
	}
	return &plan{sc: sc, steps: steps, finish: finish}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// trialsOf returns a contestant's trials of m, nil if it has none.
func trialsOf(m *report.Metric, contestant string) []float64 {
	for _, r := range m.Rows {
		if r.Contestant == contestant && r.NA == "" && len(r.Trials) > 0 {
			out := make([]float64, len(r.Trials))
			for i, v := range r.Trials {
				out[i] = float64(v)
			}
			return out
		}
	}
	return nil
}
