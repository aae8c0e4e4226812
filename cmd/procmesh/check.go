package main

import (
	"flag"
	"fmt"
	"io"
)

// cmdCheck validates a config file: it loads it exactly as run would,
// including the registration-entry tie check and the policy's routes, and
// exits 1 with one FILE:LINE error per line.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/procmesh/procmesh.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return 1
	}
	if _, err := buildRegistry(cfg); err != nil {
		printErrors(stderr, err)
		return 1
	}
	if _, err := buildState(cfg); err != nil {
		printErrors(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (trust domain %s, %d workloads, %d routes, %d policy rules, default %s)\n",
		*path, cfg.TrustDomain, len(cfg.Workloads), len(cfg.Routes), len(cfg.Policy.Rules), cfg.Policy.Default)
	return 0
}
