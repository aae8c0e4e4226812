package suite

import (
	"fmt"
	"math"
	"time"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/report"
)

func (e *env) keepalivePlan() *plan {
	sc := &report.Scenario{ID: "keepalive", Title: "HTTP/1.1 keep-alive, 64 connections, 1 KiB responses",
		How: fmt.Sprintf("Closed loop: %d keep-alive connections to the contestant's Unix socket, each sending `GET /1k` (Host `%s`) as soon as the previous response arrived; the proxy forwards over pooled mTLS HTTP/1.1 connections. "+
			"h2load: `h2load --h1 -c %d -t 1 -D %s --warm-up-time %s -B unix:SOCKET http://%s/1k`. "+
			"Go client: the suite's own lean HTTP/1.1 client, the same for every contestant, over the socket or (direct) over mTLS to the upstream. "+
			"Proxy CPU is utime+stime of every process of the proxy over the run, divided by the requests it served.",
			e.cfg.KAConns, peers.HostH1, e.cfg.KAConns, e.cfg.KADuration, e.cfg.KAWarmup, peers.HostH1)}
	h2l := newMetric("ka_h2load", "h2load", "req/s", "higher", report.HAProxy)
	goc := newMetric("ka_go", "Go client", "req/s", "higher", report.HAProxy, report.Direct)
	cpu := newMetric("ka_cpu", "proxy CPU per request, Go client", "µs/req", "lower", report.HAProxy)
	sc.Metrics = []*report.Metric{h2l, goc, cpu}
	e.variantRatios(goc, cpu)
	h2l.SetNA(report.Direct, "h2load cannot present a client certificate; the Go client row measures direct mTLS")
	cpu.SetNA(report.Direct, "no proxy process")
	for _, c := range e.contenders {
		if c.in("keepalive") && !c.in("keepalive-h2load") {
			h2l.SetNA(c.name, "the procmesh variants run with the Go client only (h2load would measure the same cost again)")
		}
	}
	if e.h2loadExe == "" {
		for _, c := range e.contenders {
			if !c.in("keepalive-h2load") {
				continue
			}
			h2l.SetNA(c.name, "h2load is not installed (apt-get install nghttp2-client)")
		}
	}
	var steps []step
	for t := range e.cfg.Trials {
		for _, c := range e.rotate("keepalive-h2load", t) {
			if c.isDirect() || e.h2loadExe == "" {
				continue
			}
			steps = append(steps, step{
				label: fmt.Sprintf("keep-alive h2load, %s, trial %d/%d", c.name, t+1, e.cfg.Trials),
				run: func() string {
					r, err := load.H2load{Binary: e.h2loadExe, Socket: c.sockets.HTTP, URL: "http://" + peers.HostH1 + "/1k",
						Conns: e.cfg.KAConns, Warmup: e.cfg.KAWarmup, Duration: e.cfg.KADuration}.Run(e.ctx)
					if err != nil {
						h2l.Add(c.name, math.NaN())
						e.errorf("keep-alive h2load, %s, trial %d: %v", c.name, t+1, err)
						return "error: " + err.Error()
					}
					h2l.Add(c.name, r.RPS)
					res := fmt.Sprintf("%.0f req/s", r.RPS)
					if bad := r.Failed + r.Errored + r.StatusBad; bad > 0 {
						res += fmt.Sprintf(" (%d failed)", bad)
					}
					return res
				},
			})
		}
		for _, c := range e.rotate("keepalive", t) {
			steps = append(steps, step{
				label: fmt.Sprintf("keep-alive Go client, %s, trial %d/%d", c.name, t+1, e.cfg.Trials),
				run: func() string {
					meter := e.startCPU(c)
					r := load.RunClosed(e.ctx, load.Closed{Dial: e.dialer(c, "http"), Request: load.Request(peers.HostH1, "/1k"),
						Conns: e.cfg.KAConns, Warmup: e.cfg.KAWarmup, Duration: e.cfg.KADuration})
					perReq := meter.perRequest(r.All)
					if r.Requests == 0 {
						goc.Add(c.name, math.NaN())
						cpu.Add(c.name, math.NaN())
						e.errorf("keep-alive Go client, %s, trial %d: no request succeeded: %s", c.name, t+1, whyNone(r))
						return "error: " + whyNone(r)
					}
					goc.Add(c.name, r.RPS())
					if !c.isDirect() {
						cpu.Add(c.name, perReq)
					}
					return closedSummary(r, perReq)
				},
			})
		}
	}
	e.markNA("keepalive", sc.Metrics...)
	return &plan{sc: sc, steps: steps}
}

// whyNone says why a closed loop completed no request in its window.
func whyNone(r load.ClosedResult) string {
	if r.FirstErr != "" {
		return r.FirstErr
	}
	return fmt.Sprintf("no error, but no response completed inside the %s window (a stalled or starved machine)", r.Elapsed.Round(time.Millisecond))
}

// closedSummary is the progress line of a closed-loop measurement: its
// rate, the proxy's CPU per request when measured, and its errors.
func closedSummary(r load.ClosedResult, perReq float64) string {
	res := fmt.Sprintf("%.0f req/s", r.RPS())
	if !math.IsNaN(perReq) {
		res += fmt.Sprintf(", %.1f µs CPU/req", perReq)
	}
	if r.Errors > 0 {
		res += fmt.Sprintf(" (%d errors: %s)", r.Errors, r.FirstErr)
	}
	return res
}
