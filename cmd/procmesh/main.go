// Command procmesh is the per-node identity proxy. It gives every local
// process that connects to its Unix socket its own SPIFFE identity and makes
// that process's upstream mTLS connections with it.
//
// Usage:
//
//	procmesh run -config FILE        serve until SIGTERM
//	procmesh check -config FILE      validate a config, exit 1 on errors
//	procmesh ca bundle -config FILE  print the trust bundle (creating the CA)
//	procmesh explain -config FILE -pid N [-url URL -method M -header 'N: v']
//	                                 show how procmesh sees a process and
//	                                 decides its requests
//	procmesh status -config FILE     print the status page of a running
//	                                 procmesh (its admin listener)
//	procmesh version                 print the version
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: procmesh <command> [flags]

commands:
  run -config FILE          serve until SIGTERM or SIGINT; SIGHUP reloads
                            and reopens log.file
  check -config FILE        validate a config; exit 1 with FILE:LINE errors
  ca bundle -config FILE    create the CA if needed and print its trust bundle (PEM)
  explain -config FILE -pid N [-url URL] [-method M] [-header 'Name: value']
                            show a process's selectors, matched entry, SPIFFE ID
                            and the policy decision for every route, or with
                            -url the rule trace for that one request
  status [-config FILE | -admin ADDR]
                            print a running procmesh's identities, processes,
                            pools, recent refusals and reloads (admin.listen)
  version                   print the version

Run 'procmesh <command> -h' for a command's flags.
`

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain dispatches a command line and returns the exit code.
func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "ca":
		if len(args) < 2 || args[1] != "bundle" {
			fmt.Fprintln(stderr, "usage: procmesh ca bundle -config FILE")
			return 2
		}
		return cmdCABundle(args[2:], stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdout, stderr)
	case "status":
		return cmdStatus(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "procmesh", version())
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "procmesh: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
