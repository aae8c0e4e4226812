package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/rs/zerolog"
)

// cmdCABundle prints the PEM trust bundle of the node's trust domain,
// creating the built-in CA first if it does not exist yet. Upstreams that
// should accept procmesh's workloads trust this bundle.
func cmdCABundle(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ca bundle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/procmesh/procmesh.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return 1
	}
	ca, err := loadCA(cfg, zerolog.Nop())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	stdout.Write(ca.BundlePEM())
	return 0
}
