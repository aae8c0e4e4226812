package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/procmesh/procmesh/bench/upstream"
)

// cmdUpstream runs the benchmark's upstream until SIGTERM, writing its
// addresses as JSON to -ready once it listens.
func cmdUpstream(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o upstream.Options
	fs.StringVar(&o.Identity.CertFile, "cert", "", "X509-SVID certificate (PEM)")
	fs.StringVar(&o.Identity.KeyFile, "key", "", "its key (PEM)")
	fs.StringVar(&o.Identity.BundleFile, "bundle", "", "CA bundle that verifies clients (PEM)")
	fs.StringVar(&o.Identity.TrustDomain, "trust-domain", "bench.test", "clients' trust domain")
	fs.StringVar(&o.H1, "h1", "", "HTTP/1.1 over TLS address")
	fs.StringVar(&o.H2, "h2", "", "HTTP/2 over TLS address")
	fs.StringVar(&o.H3, "h3", "", "HTTP/3 (UDP) address")
	fs.StringVar(&o.L4, "l4", "", "L4 sink over TLS address")
	fs.StringVar(&o.Stats, "stats", "", "plain HTTP stats address (GET /stats)")
	fs.IntVar(&o.BodySize, "body", 1024, "response body bytes")
	ready := fs.String("ready", "", "write the listening addresses here (JSON)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	s, err := upstream.Start(o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer s.Close()
	b, _ := json.Marshal(s.Addrs())
	if *ready != "" {
		tmp := *ready + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil || os.Rename(tmp, *ready) != nil {
			fmt.Fprintln(stderr, "upstream: cannot write", *ready)
			return 1
		}
	}
	fmt.Fprintf(stderr, "upstream listening: %s\n", b)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}
