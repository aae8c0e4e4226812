// Command procmesh-bench is procmesh's benchmark suite: it runs procmesh,
// HAProxy, nginx, Envoy and Caddy (when installed) and direct mTLS side by side
// against one upstream and writes the results to bench/results (see
// bench/README.md). `make bench` and `make bench-quick` run it.
//
// Usage:
//
//	procmesh-bench [run] [-quick] [flags]   run the suite
//	procmesh-bench upstream [flags]         the benchmark's upstream (started by run)
//	procmesh-bench cold-client [flags]      one cold-identity request (started by run)
//	procmesh-bench app -socket PATH         the inbound scenario's Unix-socket app (started by run)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/procmesh/procmesh/bench/suite"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "upstream":
			return cmdUpstream(args[1:], stderr)
		case "cold-client":
			return cmdColdClient(args[1:], stdout, stderr)
		case "app":
			return cmdApp(args[1:], stderr)
		case "run":
			args = args[1:]
		}
	}
	return cmdRun(args, stderr)
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("procmesh-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "the quick preset (make bench-quick): shorter runs, 2 trials (memory: 1), 500 idle connections and processes")
	trials := fs.Int("trials", 0, "alternating trials per figure (default: the preset's)")
	only := fs.String("only", "", "comma-separated scenarios to run: l4,keepalive,rate,h2h3,cold,memory,profile,inbound (inbound runs only when named here or with -inbound)")
	inbound := fs.Bool("inbound", false, "add the inbound scenario (remote mTLS client → procmesh inbound, HAProxy, nginx, Caddy → Unix-socket app) to the scenarios run")
	procmesh := fs.String("procmesh", "bin/procmesh", "procmesh binary under test")
	repo := fs.String("repo", ".", "repository root (bench/csrc, bench/pprof, bench/results)")
	src := fs.String("procmesh-src", "", "module root whose cmd/procmesh the profiling build compiles (default -repo)")
	results := fs.String("results", "", "results directory (default REPO/bench/results)")
	label := fs.String("label", "", "added to the results' names (2026-12-03-quick-LABEL.md); letters, digits and dashes")
	runDir := fs.String("run-dir", "", "directory for sockets, configs and logs (default a new /tmp/procmesh-bench.*)")
	keep := fs.Bool("keep", false, "keep the run directory (configs and logs) after the run")
	profile := fs.Bool("profile", false, "take procmesh pprof profiles in the quick preset too (the full preset always does)")
	idle := fs.Int("idle-conns", 0, "idle client connections for the memory figure (default: the preset's)")
	procs := fs.Int("cached-procs", 0, "distinct processes for procmesh's cache memory figure (default: the preset's)")
	variants := fs.Bool("variants", false, "also run procmesh with attest.connect_record: off and with attest.foreign_writer: attest (keep-alive Go client, fixed rate, cold identity): what those protections cost, in the same trials")
	preconnect := fs.Int("preconnect", -1, "routes[].preconnect of procmesh's HTTP/1.1 route: TLS handshakes kept ready for new identities (default: the preset's, 1; 0 = off)")
	waitQuiet := fs.Duration("wait-quiet", 0, "before starting, wait up to this long for other processes to use less than 0.1 core")
	var env multiFlag
	fs.Var(&env, "procmesh-env", "KEY=VALUE added to procmesh's environment, e.g. GOGC=400 (repeatable)")
	yamlExtra := fs.String("procmesh-yaml", "", "YAML appended to procmesh's generated config, e.g. 'upstream: {max_idle_per_pool: 128}'")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := suite.Full()
	if *quick {
		cfg = suite.Quick()
	}
	if *trials > 0 {
		cfg.Trials, cfg.MemTrials = *trials, *trials
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	if *idle > 0 {
		cfg.IdleConns = *idle
	}
	if *procs > 0 {
		cfg.CachedProcs = *procs
	}
	cfg.Profile = cfg.Profile || *profile
	cfg.ProcmeshBin = *procmesh
	cfg.Repo = *repo
	cfg.ProcmeshSrc = *src
	cfg.ResultsDir = *results
	if strings.Trim(*label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
		fmt.Fprintf(stderr, "procmesh-bench: -label %q: use letters, digits and dashes only (it becomes part of file names)\n", *label)
		return 2
	}
	cfg.Label = *label
	cfg.RunDir = *runDir
	cfg.KeepRunDir = *keep || *runDir != ""
	cfg.Progress = stderr
	cfg.ProcmeshEnv = env
	cfg.ProcmeshYAML = *yamlExtra
	cfg.WaitQuiet = *waitQuiet
	cfg.Variants = cfg.Variants || *variants
	if *preconnect >= 0 {
		cfg.Preconnect = *preconnect
	}
	cfg.Inbound = *inbound
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "procmesh-bench: warning: not root; the cold-identity scenario needs to start processes as other uids and will fail")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if _, err := suite.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "procmesh-bench: %v (after %s)\n", err, time.Since(start).Round(time.Second))
		return 1
	}
	return 0
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
