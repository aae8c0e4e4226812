// Command procmesh-demo is `make demo-attack`: on one machine, with real
// programs, it shows the sidecar's failure that procmesh exists to fix and
// the attacks on procmesh's binding that THREATS.md lists, and asserts
// every outcome.
//
// It starts a real mTLS upstream (package echo: go-spiffe, TLS 1.3) that
// records the client SPIFFE ID of every request; HAProxy from Debian as a
// conventional egress sidecar holding the application's one certificate
// (configured as bench/ configures it, bench/peers and bench/pki); and
// procmesh built from this tree, with a registration entry for the
// application's binary. Then a co-located process of the application's uid
// that is not the application, and the attacks of THREATS I11, I12 and
// I15-I17 and P9, go through each proxy in turn. The sidecar hands the
// application's identity to every one of them; procmesh refuses each and
// its audit line names the process that really acted. A closing table
// sums it up; the exit status is 1 if any outcome differs from that.
//
// Usage (as root, Linux 6.7+ with cgroup v2 and unprivileged user
// namespaces; HAProxy, setpriv and unshare on PATH):
//
//	procmesh-demo [-procmesh bin/procmesh] [-keep]
//
// The processes it starts run as uid 1000 (created elsewhere: the demo
// does not add users). Internally the program is also every attacker:
// `procmesh-demo role NAME` (roles_linux.go).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "role" {
		if err := runRole(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "procmesh-demo role %s (pid %d): %v\n", os.Args[2], os.Getpid(), err)
			os.Exit(1)
		}
		return
	}
	self, _ := os.Executable()
	fs := flag.NewFlagSet("procmesh-demo", flag.ExitOnError)
	pm := fs.String("procmesh", filepath.Join(filepath.Dir(self), "procmesh"), "the procmesh executable to demonstrate")
	keep := fs.Bool("keep", false, "keep the run directory (configurations, logs) and print its path")
	fs.Parse(os.Args[1:])
	start := time.Now()
	err := run(os.Stdout, *pm, *keep)
	fmt.Printf("\nwall time %.1fs\n", time.Since(start).Seconds())
	if err != nil {
		fmt.Fprintln(os.Stderr, "procmesh-demo:", err)
		os.Exit(1)
	}
}
