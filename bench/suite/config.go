// Package suite runs the benchmark: it sets up one CA, one upstream and
// every contestant side by side, runs each scenario as alternating trials
// with a progress line per step, and writes the results (JSON, Markdown,
// SVG) to the results directory.
//
// It leaves out how load is generated (package load), how proxies are
// configured (package peers) and how results are drawn (package report).
package suite

import (
	"io"
	"slices"
	"time"
)

// Config is one run of the suite. Quick and Full return the presets `make
// bench-quick` and `make bench` use.
type Config struct {
	Mode   string // quick | full
	Trials int    // alternating trials per figure

	L4Warmup, L4Duration     time.Duration
	KAWarmup, KADuration     time.Duration
	KAConns                  int
	Rate                     float64 // fixed-rate requests per second
	RateConns                int
	RateWarmup, RateDuration time.Duration
	H2Warmup, H2Duration     time.Duration
	ColdSamples              int // processes per contestant per trial
	MemTrials                int
	IdleConns                int // idle client connections for bytes per connection
	CachedProcs              int // distinct processes procmesh caches
	Profile                  bool
	ProfileDuration          time.Duration
	// Variants runs procmesh with attest.connect_record: off and with
	// attest.foreign_writer: attest beside it in the keep-alive (Go
	// client), fixed-rate and cold-identity scenarios: what those
	// protections cost, measured in the same trials.
	Variants bool
	// Preconnect is routes[].preconnect of procmesh's HTTP/1.1 route (builds
	// that have the key): handshakes kept ready for new identities, which
	// the cold-identity figure measures. Both presets: 1; -preconnect 0
	// measures without.
	Preconnect int

	// Only, when not empty, limits the run to these scenario IDs (l4,
	// keepalive, rate, h2h3, cold, memory, inbound).
	Only []string
	// Inbound adds the inbound scenario (remote mTLS client → TCP
	// terminator → Unix-socket app) to the run. It is opt-in, like
	// naming it in Only: the presets' budgets leave no room for it.
	Inbound bool

	Repo        string // repository root: bench/csrc and bench/pprof
	ProcmeshSrc string // module root whose cmd/procmesh the profiling build compiles; default Repo
	ProcmeshBin string // bin/procmesh
	RunDir      string // sockets, configs, logs; default a new /tmp/procmesh-bench.* removed at the end
	KeepRunDir  bool
	// WaitQuiet, when set, waits up to this long before starting for a
	// moment when other processes use less than a tenth of a core.
	WaitQuiet  time.Duration
	ResultsDir string // default Repo/bench/results
	Label      string // added to the results' names: 2026-12-03-quick-<label>
	GID        int    // group of the sockets and of the cold-identity processes
	Progress   io.Writer

	// ProcmeshEnv is added to procmesh's environment (GOGC=400, ...) and
	// ProcmeshYAML to the end of its generated configuration, to measure
	// what a knob changes. The YAML may only hold top-level keys the
	// generator does not write (it writes trust_domain, listen, identity,
	// cache, workloads, routes, policy, log, and limits where supported),
	// e.g. "upstream: {max_idle_per_pool: 128}".
	ProcmeshEnv  []string
	ProcmeshYAML string
}

// Quick is `make bench-quick`: every scenario, two alternating trials of
// short runs, 500 idle connections and cached processes. Under two
// minutes on two cores.
func Quick() Config {
	return Config{
		Mode: "quick", Trials: 2,
		L4Warmup: 150 * time.Millisecond, L4Duration: 300 * time.Millisecond,
		KAWarmup: 250 * time.Millisecond, KADuration: 750 * time.Millisecond, KAConns: 64,
		Rate: 1000, RateConns: 8, RateWarmup: 250 * time.Millisecond, RateDuration: 1000 * time.Millisecond,
		H2Warmup: 200 * time.Millisecond, H2Duration: 500 * time.Millisecond,
		ColdSamples: 30, MemTrials: 1, IdleConns: 500, CachedProcs: 500,
		ProfileDuration: 2 * time.Second,
		GID:             4242, Preconnect: 1,
	}
}

// Full is `make bench`: three alternating trials, long enough for stable
// medians, 10,000 idle connections and cached processes, procmesh
// profiles. Under ten minutes on two cores.
func Full() Config {
	return Config{
		Mode: "full", Trials: 3,
		L4Warmup: 400 * time.Millisecond, L4Duration: 1400 * time.Millisecond,
		KAWarmup: 500 * time.Millisecond, KADuration: 2500 * time.Millisecond, KAConns: 64,
		Rate: 1000, RateConns: 8, RateWarmup: 500 * time.Millisecond, RateDuration: 4 * time.Second,
		H2Warmup: 500 * time.Millisecond, H2Duration: 1500 * time.Millisecond,
		ColdSamples: 200, MemTrials: 3, IdleConns: 10000, CachedProcs: 10000,
		Profile: true, ProfileDuration: 5 * time.Second,
		GID: 4242, Preconnect: 1,
	}
}

// optIn are the scenarios a run without -only leaves out unless asked
// for (Config.Inbound).
var optIn = []string{"inbound"}

func (c Config) wants(id string) bool {
	if id == "inbound" && c.Inbound {
		return true
	}
	if len(c.Only) == 0 {
		return !slices.Contains(optIn, id)
	}
	return slices.Contains(c.Only, id)
}
