package suite

import (
	"fmt"
	"math"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/report"
)

// naL4 says why a peer cannot carry raw bytes.
var naL4 = map[string]string{
	report.Caddy: "core Caddy has no L4 proxy (layer 4 is the third-party caddy-l4 module, not in Debian's caddy)",
}

// newMetric returns a metric that compares to HAProxy and direct TLS.
func newMetric(id, title, unit, better string, ratios ...string) *report.Metric {
	return &report.Metric{ID: id, Title: title, Unit: unit, Better: better, Ratios: ratios}
}

// variantRatios adds a × procmesh row to ms when the procmesh variants run:
// each variant's figure over procmesh's in the same trial.
func (e *env) variantRatios(ms ...*report.Metric) {
	if !e.cfg.Variants {
		return
	}
	for _, m := range ms {
		m.Ratios = append(m.Ratios, report.Procmesh)
	}
}

// rotate returns the contestants of scenario id that are running, starting
// at trial t: each trial changes who goes first, so no contestant always
// runs right after the same neighbour or always first on a cold cache.
func (e *env) rotate(id string, t int) []*contestant {
	var ok []*contestant
	for _, c := range e.contenders {
		if c.ok() && c.in(id) {
			ok = append(ok, c)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	out := make([]*contestant, 0, len(ok))
	for i := range ok {
		out = append(out, ok[(i+t)%len(ok)])
	}
	return out
}

// markNA marks every contestant of scenario id that is not running as n/a
// in ms.
func (e *env) markNA(id string, ms ...*report.Metric) {
	for _, c := range e.contenders {
		if !c.ok() && c.in(id) {
			for _, m := range ms {
				m.SetNA(c.name, c.status)
			}
		}
	}
}

func (e *env) l4Plan() *plan {
	sc := &report.Scenario{ID: "l4", Title: "L4 bulk transfer",
		How: fmt.Sprintf("Each stream writes 64 KiB chunks into the contestant's raw socket (procmesh: a route with `protocol: tcp` and its own `socket:`; HAProxy `mode tcp`; nginx `stream {}` with `proxy_ssl on`; Envoy `tcp_proxy`; Caddy has none), which carries them over mTLS to the upstream's sink; direct mTLS writes to the sink itself. "+
			"The sink acknowledges every MiB; throughput counts acknowledged bytes from the first acknowledgement after a %s warm-up to the last, over %s of writing.", e.cfg.L4Warmup, e.cfg.L4Duration)}
	var steps []step
	var metrics []*report.Metric
	for _, streams := range []int{1, 8} {
		title := "1 stream"
		if streams > 1 {
			title = fmt.Sprintf("%d streams", streams)
		}
		m := newMetric(fmt.Sprintf("l4_%d", streams), title, "Gbit/s", "higher", report.HAProxy, report.Direct)
		sc.Metrics = append(sc.Metrics, m)
		metrics = append(metrics, m)
		for name, why := range naL4 {
			m.SetNA(name, why)
		}
		for t := range e.cfg.Trials {
			for _, c := range e.rotate("l4", t) {
				if isNA(m, c.name) {
					continue
				}
				steps = append(steps, step{
					label: fmt.Sprintf("L4 %s, %s, trial %d/%d", title, c.name, t+1, e.cfg.Trials),
					run: func() string {
						r, err := load.RunBulk(e.ctx, load.Bulk{Dial: e.dialer(c, "l4"), Streams: streams, Warmup: e.cfg.L4Warmup, Duration: e.cfg.L4Duration})
						if err != nil {
							m.Add(c.name, math.NaN())
							e.errorf("L4 %s, %s, trial %d: %v", title, c.name, t+1, err)
							return "error: " + err.Error()
						}
						m.Add(c.name, r.Gbps())
						return fmt.Sprintf("%.2f Gbit/s", r.Gbps())
					},
				})
			}
		}
	}
	e.markNA("l4", metrics...)
	return &plan{sc: sc, steps: steps}
}
