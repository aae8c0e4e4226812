package main

import (
	"fmt"
	"io"

	"github.com/rs/zerolog"
)

// cmdCABundle prints the PEM trust bundle of the node's trust domain,
// creating the built-in CA first if it does not exist yet. Upstreams that
// should accept procmesh's workloads trust this bundle.
func cmdCABundle(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlagSet("ca bundle", stderr)
	cfg, code := parseAndLoad(fs, path, args, stderr)
	if cfg == nil {
		return code
	}
	if cfg.Identity.Provider == "spire" {
		fmt.Fprintf(stderr, "procmesh ca bundle: identity.provider is spire in %s: the trust bundle is SPIRE's; print it with `spire-server bundle show -format pem`\n", cfg.Path)
		return 1
	}
	ca, err := loadCA(cfg, zerolog.Nop(), nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	stdout.Write(ca.BundlePEM())
	return 0
}
