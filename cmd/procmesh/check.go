package main

import (
	"fmt"
	"io"
)

// cmdCheck validates a config file: it loads it exactly as run would,
// including the registration-entry tie check and the policy's routes, and
// exits 1 with one FILE:LINE error per line. Policy rules that can never
// decide a request (shadowed by an earlier rule, HTTP conditions on a tcp
// route, audit mode under default allow) are errors at the rule's line:
// config.Load builds the policy the way run does.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlagSet("check", stderr)
	cfg, code := parseAndLoad(fs, path, args, stderr)
	if cfg == nil {
		return code
	}
	if _, err := buildRegistry(cfg); err != nil {
		printErrors(stderr, err)
		return 1
	}
	if _, err := buildState(cfg); err != nil {
		printErrors(stderr, err)
		return 1
	}
	audit := 0
	for _, r := range cfg.Policy.Rules {
		if r.Mode == "audit" {
			audit++
		}
	}
	fmt.Fprintf(stdout, "%s: ok (trust domain %s, %d workloads, %d routes, %d policy rules (%d in audit mode), default %s)\n",
		*path, cfg.TrustDomain, len(cfg.Workloads), len(cfg.Routes), len(cfg.Policy.Rules), audit, cfg.Policy.Default)
	return 0
}
