package suite

import (
	"time"
)

// Costs the estimate assumes beyond a step's own warm-up and duration,
// measured on the 2-core machines this project runs on.
const (
	stepOverhead    = 100 * time.Millisecond  // start, stop, CPU and RSS samples
	spawnCost       = 5 * time.Millisecond    // one cold-identity process (4.5 ms in 2026-12-05-s9-1)
	restartCost     = time.Second             // stop, start, settle, one request
	perIdleConn     = 500 * time.Microsecond  // open, one request: 0.3 ms (nginx) to 0.75 ms (HAProxy), measured 2026-12-05
	perCachedProc   = 1100 * time.Microsecond // fork, request, report
	setupCost       = 6 * time.Second         // CA, upstream, configs, starting the proxies
	profileBuild    = 15 * time.Second        // go build -overlay on a warm cache
	contestantsFull = 6                       // procmesh, HAProxy, nginx, Envoy, Caddy, direct
	variants        = 2                       // procmesh-norecord, procmesh-fwattest (-variants)
)

// Estimate is how long a run of c takes with every contestant installed,
// Envoy and Caddy included: what `make bench` and `make bench-quick`
// promise (10 and 2 minutes, builds excluded) is checked against it in the
// tests.
func (c Config) Estimate() time.Duration {
	n := time.Duration(contestantsFull)
	var v time.Duration // procmesh variants: keep-alive (Go client), rate, cold (new and known uid)
	if c.Variants {
		v = variants
	}
	trials := time.Duration(c.Trials)
	step := func(warm, dur time.Duration) time.Duration { return warm + dur + stepOverhead }
	var d time.Duration
	if c.wants("l4") {
		d += 2 * trials * (n - 1) * step(c.L4Warmup, c.L4Duration) // Caddy has no L4
	}
	if c.wants("keepalive") {
		d += trials * (2*n - 1 + v) * step(c.KAWarmup, c.KADuration) // h2load has no direct row
	}
	if c.wants("rate") {
		d += trials * (n + v) * step(c.RateWarmup, c.RateDuration)
	}
	if c.wants("h2h3") {
		d += trials * (5 + 2) * step(c.H2Warmup, c.H2Duration) // h2: procmesh, HAProxy, Envoy, Caddy, direct; h3: procmesh, direct
	}
	if c.wants("cold") {
		d += trials * (n + 1 + 2*v) * (time.Duration(c.ColdSamples)*spawnCost + stepOverhead)
	}
	if c.wants("memory") {
		proxies := n - 1
		perProxy := 2*restartCost + step(c.RateWarmup, c.RateDuration) + time.Duration(c.IdleConns)*perIdleConn
		d += time.Duration(c.MemTrials)*(proxies*perProxy+2*time.Second) + restartCost + time.Duration(c.CachedProcs)*perCachedProc // cached processes: first trial only
	}
	if c.wants("inbound") {
		d += inboundStartCost + trials*(inboundContestants*2+e2eContestants)*step(c.KAWarmup, c.KADuration) // keep-alive, new connection per request; end to end
	}
	if c.Profile && c.wants("profile") {
		d += profileBuild + 3*(c.ProfileDuration+2*time.Second) + time.Duration(min(c.IdleConns, 2000))*perIdleConn + 2*time.Second
	}
	return d + setupCost
}
