package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/procmesh/procmesh/bench/upstream"
)

// cmdApp runs the inbound scenario's local service: plain HTTP/1.1 on a
// Unix socket until SIGTERM. The suite starts it from a copy of this
// binary of its own, so that procmesh can attest the serving process by
// its path.
func cmdApp(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "Unix socket to serve HTTP/1.1 on")
	body := fs.Int("body", 1024, "response body bytes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *socket == "" {
		fmt.Fprintln(stderr, "app: -socket is required")
		return 2
	}
	a, err := upstream.ServeApp(*socket, *body)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer a.Close()
	fmt.Fprintf(stderr, "app listening on %s\n", *socket)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}
