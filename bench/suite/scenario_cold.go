package suite

import (
	"fmt"
	"math"
	"strings"
	"syscall"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/bench/report"
	"github.com/procmesh/procmesh/bench/stats"
)

// profileColdUIDs bounds the cold load of the profiling build.
const profileColdUIDs = 1000

func (e *env) coldPlan() *plan {
	sc := &report.Scenario{ID: "cold", Title: "Cold identity: a new process per request, time to first byte",
		How: fmt.Sprintf("Each sample is a new process (this binary's `cold-client`) that connects, sends one `GET /1k` and times from before connect() to the first response byte. "+
			"procmesh: every process runs as a uid it has never seen (`SysProcAttr.Credential`, one registration entry `unix:uid:N` per uid), so each request pays attestation, minting an SVID and a new mTLS handshake upstream with it "+
			"(routes[].preconnect: %d; with it, the handshake starts from one the route began before the process came, stopped where the client certificate is due; -preconnect 0 measures without); "+
			"*known uid*: new processes of one uid whose SVID and upstream connections already exist (attestation only). "+
			"HAProxy, nginx, Envoy, Caddy: a new process through a proxy whose upstream connection is pooled (they have no per-process identity). "+
			"direct: the new process makes a full mTLS handshake itself. %d processes per contestant per trial. "+
			"Proxy CPU per request is the proxy's utime+stime over the samples divided by their number: unlike the latency, it does not depend on how busy the machine is.", e.pmCfg.Preconnect, e.cfg.ColdSamples)}
	p50 := newMetric("cold_p50", "time to first byte p50", "µs", "lower", report.HAProxy, report.Direct)
	p99 := newMetric("cold_p99", "time to first byte p99", "µs", "lower", report.HAProxy, report.Direct)
	cpu := newMetric("cold_cpu", "proxy CPU per new-process request", "µs/req", "lower", report.HAProxy)
	cpu.SetNA(report.Direct, "no proxy process")
	sc.Metrics = []*report.Metric{p50, p99, cpu}
	e.variantRatios(sc.Metrics...)
	// Each procmesh instance (procmesh and its variants) also runs a
	// known-uid row, measured against that instance.
	var known []*contestant
	instance := map[string]*contestant{}
	for _, c := range e.contenders {
		if isProcmeshInstance(c.name) && c.in("cold") {
			k := &contestant{name: c.name + knownSuffix, status: c.status, sockets: c.sockets}
			known = append(known, k)
			instance[k.name] = c
		}
	}

	var steps []step
	for t := range e.cfg.Trials {
		for _, c := range append(e.rotate("cold", t), known...) {
			if !c.ok() {
				continue
			}
			steps = append(steps, step{
				label: fmt.Sprintf("cold identity, %s, trial %d/%d", c.name, t+1, e.cfg.Trials),
				run: func() string {
					sp := e.coldSpawn(c)
					if !isProcmeshInstance(c.name) {
						sp.Run(e.ctx, 1) // warm: pool, SVID
					}
					meter := e.startCPU(c)
					if pm := instance[c.name]; pm != nil {
						meter = e.startCPU(pm)
					}
					ttfb, failed, firstErr := sp.Run(e.ctx, e.cfg.ColdSamples)
					perReq := meter.perRequest(int64(len(ttfb)))
					if !c.isDirect() {
						cpu.Add(c.name, perReq)
					}
					if len(ttfb) < e.cfg.ColdSamples/2 {
						p50.Add(c.name, math.NaN())
						p99.Add(c.name, math.NaN())
						e.errorf("cold identity, %s, trial %d: %d of %d processes failed: %s", c.name, t+1, failed, e.cfg.ColdSamples, firstErr)
						return fmt.Sprintf("error: %d failed: %s", failed, firstErr)
					}
					ps := stats.Percentiles(ttfb, 50, 99)
					p50.Add(c.name, us(ps[0]))
					p99.Add(c.name, us(ps[1]))
					res := fmt.Sprintf("p50 %.0f µs, p99 %.0f µs", us(ps[0]), us(ps[1]))
					if !math.IsNaN(perReq) {
						res += fmt.Sprintf(", %.0f µs CPU/req", perReq)
					}
					if failed > 0 {
						res += fmt.Sprintf(" (%d failed: %s)", failed, firstErr)
					}
					return res
				},
			})
		}
	}
	e.markNA("cold", sc.Metrics...)
	for _, k := range known {
		if !k.ok() {
			p50.SetNA(k.name, k.status)
			p99.SetNA(k.name, k.status)
			cpu.SetNA(k.name, k.status)
		}
	}
	return &plan{sc: sc, steps: steps}
}

// knownSuffix names the known-uid row of a procmesh instance.
const knownSuffix = " (known uid)"

// profileInstance names the profiling build in the cold-uid counters.
const profileInstance = "procmesh (profiling build)"

// isProcmeshInstance reports whether name is a procmesh process of its own
// (procmesh, a variant, the profiling build), to which every cold uid is
// new, rather than a known-uid row or a peer.
func isProcmeshInstance(name string) bool {
	if name == report.Procmesh || name == profileInstance {
		return true
	}
	_, ok := report.VariantBase(name)
	return ok && !strings.HasSuffix(name, knownSuffix)
}

// coldSpawn returns how to start cold-identity processes for c.
func (e *env) coldSpawn(c *contestant) load.Spawn {
	argv := []string{e.coldExe, "cold-client", "-host", peers.HostH1}
	if c.isDirect() {
		argv = append(argv, "-tls", e.up.H1, "-cert", e.direct.Cert, "-key", e.direct.Key, "-bundle", e.direct.Bundle, "-server-id", pki.UpstreamID)
	} else {
		argv = append(argv, "-unix", c.sockets.HTTP)
	}
	gid := uint32(e.cfg.GID)
	cred := func(uid int) *syscall.Credential {
		return &syscall.Credential{Uid: uint32(uid), Gid: gid, NoSetGroups: true}
	}
	sp := load.Spawn{Argv: argv, Env: []string{"PATH=/usr/bin:/bin", "GOMAXPROCS=1"}}
	switch {
	case isProcmeshInstance(c.name):
		// Each instance has its own count: a uid another instance has
		// seen is still new to this one.
		if e.coldNext == nil {
			e.coldNext = map[string]int{}
		}
		sp.Cred = func(int) *syscall.Credential {
			uid := e.coldUIDs[e.coldNext[c.name]%len(e.coldUIDs)]
			e.coldNext[c.name]++
			return cred(uid)
		}
	case strings.HasSuffix(c.name, knownSuffix):
		sp.Cred = func(int) *syscall.Credential { return cred(knownUID) }
	default:
		sp.Cred = func(int) *syscall.Credential { return cred(peerUID) }
	}
	return sp
}
