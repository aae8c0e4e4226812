package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/procmesh/procmesh/bench/load"
)

// cmdColdClient makes one request as a fresh process and prints its time
// to first byte in nanoseconds: the cold-identity scenario starts one per
// sample, each as its own uid.
func cmdColdClient(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cold-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	unix := fs.String("unix", "", "proxy Unix socket")
	tlsAddr := fs.String("tls", "", "upstream address for direct mTLS")
	cert := fs.String("cert", "", "direct: client certificate")
	key := fs.String("key", "", "direct: client key")
	bundle := fs.String("bundle", "", "direct: CA bundle")
	serverID := fs.String("server-id", "", "direct: the upstream's SPIFFE ID")
	host := fs.String("host", "echo.bench.test", "Host header")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var dial load.Dialer
	switch {
	case *unix != "":
		dial = load.UnixDialer(*unix)
	case *tlsAddr != "":
		cfg, err := load.DirectTLS(*cert, *key, *bundle, *serverID, "http/1.1")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		dial = load.TLSDialer(*tlsAddr, cfg)
	default:
		fmt.Fprintln(stderr, "cold-client: -unix or -tls is required")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ttfb, err := load.ColdClient(ctx, dial, load.Request(*host, "/1k"))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, ttfb.Nanoseconds())
	return 0
}
