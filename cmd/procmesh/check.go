package main

import (
	"fmt"
	"io"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/registry"
)

// cmdCheck validates a config file: it loads it exactly as run would,
// including the registration-entry tie check and the policy's routes, and
// exits 1 with one FILE:LINE error per line. Policy rules that can never
// decide a request (shadowed by an earlier rule, HTTP conditions on a tcp
// route, audit mode under default allow) are errors at the rule's line:
// config.Load builds the policy the way run does. Entries that rest on an
// executable's path alone get a warning on stderr (pathOnlyWarnings); they
// do not fail the check.
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
	for _, w := range pathOnlyWarnings(cfg) {
		fmt.Fprintln(stderr, w)
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

// pathOnlyWarnings warns, as FILE:LINE: warning: ..., about each entry
// that names an executable by unix:path without pinning its content with
// unix:sha256 (THREATS I16). procmesh gives unix:path only for the file at
// that path in its own mount namespace, but the path alone still trusts
// whatever executable is there: anyone who can write that file or a
// directory above it chooses the code that gets the identity.
func pathOnlyWarnings(cfg *config.Config) []string {
	var out []string
	for i, w := range cfg.Workloads {
		var path string
		pinned := false
		for _, s := range w.Selectors {
			typ, value, err := registry.ParseSelector(s)
			switch {
			case err != nil:
			case typ == registry.TypePath:
				path = value
			case typ == registry.TypeSHA256:
				pinned = true
			}
		}
		if path == "" || pinned {
			continue
		}
		out = append(out, fmt.Sprintf("%s:%d: warning: workloads[%d] (%s) rests on unix:path:%s without unix:sha256: "+
			"any executable at that path gets this identity, whoever can write it or a directory above it chooses the code; "+
			"add unix:sha256:<hash> of the file (procmesh explain -pid shows it) unless the path is writable only by root "+
			"and you accept any upgrade of it",
			cfg.Path, w.Line, i, w.SPIFFEID, path))
	}
	return out
}
