package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/policy"
)

// cmdExplain shows how procmesh sees a running process: its selectors, the
// registration entry it matches, its SPIFFE ID, and the policy decision for
// every route. It reads the same /proc data the proxy reads at connect.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/procmesh/procmesh.yaml", "config file")
	pid := fs.Int("pid", 0, "process to explain")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pid <= 0 {
		fmt.Fprintln(stderr, "procmesh explain: -pid N is required")
		return 2
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return 1
	}
	reg, err := buildRegistry(cfg)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	pol, err := buildPolicy(cfg)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	att := attest.New(attest.Options{})
	peer, err := att.PeerFromPID(int32(*pid))
	if err != nil {
		fmt.Fprintf(stderr, "procmesh explain: %v\n", err)
		return 1
	}
	defer peer.Close()
	fp, err := att.Fingerprint(peer)
	if err != nil {
		fmt.Fprintf(stderr, "procmesh explain: %v\n", err)
		return 1
	}
	proc, err := att.Attest(peer, fp)
	if err != nil {
		fmt.Fprintf(stderr, "procmesh explain: %v\n", err)
		return 1
	}

	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "process\t%d\n", proc.PID)
	fmt.Fprintf(w, "exe\t%s\n", proc.ExePath)
	fmt.Fprintf(w, "uid/gid\t%d/%d\n", proc.UID, proc.GID)
	if proc.Cgroup != "" {
		fmt.Fprintf(w, "cgroup\t%s\n", proc.Cgroup)
	}
	fmt.Fprintln(w, "selectors")
	for _, s := range proc.Selectors {
		fmt.Fprintf(w, "\t%s\n", s)
	}
	entry, matched := reg.Match(proc.Selectors)
	if !matched {
		fmt.Fprintln(w, "entry\tnone: procmesh refuses this process (403 listing the selectors above)")
		w.Flush()
		return 0
	}
	wl := cfg.Workloads[entry.Index]
	fmt.Fprintf(w, "entry\tworkloads[%d] (%s:%d)\n", entry.Index, cfg.Path, wl.Line)
	fmt.Fprintf(w, "spiffe_id\t%s\n", entry.ID)
	fmt.Fprintln(w, "policy")
	for _, r := range cfg.Routes {
		d := pol.Decide(policy.Request{Source: entry.ID, Route: r.Name})
		verdict := "deny"
		if d.Allow {
			verdict = "allow"
		}
		fmt.Fprintf(w, "\t%s\t%s\t%s\n", r.Name, verdict, d.Rule+" "+d.Reason)
	}
	w.Flush()
	return 0
}
