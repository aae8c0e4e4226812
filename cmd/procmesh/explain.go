package main

import (
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/internal/explain"
)

// cmdExplain shows how procmesh sees a running process: its selectors, the
// registration entry it matches, its SPIFFE ID, and the policy. Without
// -url it prints, for every route, the decision for a connection (CONNECT
// or the route's socket) and the rules that may allow HTTP requests; with
// -url (and -method, -header) it decides that one request as the proxy
// would, path normalisation included, and shows every rule it tried. It
// reads the same /proc data the proxy reads at connect.
func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlagSet("explain", stderr)
	pid := fs.Int("pid", 0, "process to explain")
	rawURL := fs.String("url", "", "explain one request to this URL, like http://echo.test/public/x")
	method := fs.String("method", "", "the request's method (default GET); CONNECT explains a tunnel")
	var headers headerFlags
	fs.Var(&headers, "header", "a request header, 'Name: value' (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pid <= 0 {
		fmt.Fprintln(stderr, "procmesh explain: -pid N is required")
		return 2
	}
	if *rawURL == "" && (*method != "" || len(headers) > 0) {
		fmt.Fprintln(stderr, "procmesh explain: -method and -header need -url")
		return 2
	}
	var target *explain.Target
	if *rawURL != "" {
		var err error
		if target, err = explain.ParseTarget(*rawURL); err != nil {
			fmt.Fprintf(stderr, "procmesh explain: -url: %v\n", err)
			return 2
		}
		target.Method = *method
		if target.Method == "" {
			target.Method = http.MethodGet
		}
		target.Header = http.Header(headers)
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
	att := attest.New(attestOptions(cfg, zerolog.Nop()))
	node := explain.Node{Config: cfg, Registry: reg, Policy: pol, Attestor: att, ConnectRecord: recordStatus(cfg.Attest.ConnectRecord)}
	if err := explain.Process(stdout, node, int32(*pid), target); err != nil {
		fmt.Fprintf(stderr, "procmesh explain: %v\n", err)
		return 1
	}
	return 0
}

// headerFlags collects -header 'Name: value' flags.
type headerFlags http.Header

func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return fmt.Errorf("%q is not 'Name: value'", s)
	}
	if *h == nil {
		*h = headerFlags{}
	}
	key := textproto.CanonicalMIMEHeaderKey(name)
	(*h)[key] = append((*h)[key], strings.TrimSpace(value))
	return nil
}

// recordStatus says whether procmesh, run with this config on this node,
// knows which program ran at connect() (THREATS I11): it loads the
// connect-time record for a moment to find out.
func recordStatus(mode string) string {
	if mode == "off" {
		return "off (attest.connect_record: off): a process that execs after connect() is attested as what it exec'd"
	}
	rec, err := connrecord.Open(connrecord.Options{})
	if err == nil {
		defer rec.Close()
		return "on (BPF cgroup/connect_unix at " + rec.CgroupRoot() + "): the identity is that of the program that ran at connect()"
	}
	if mode == "required" {
		return fmt.Sprintf("unavailable: %v; procmesh will not start (attest.connect_record: required)", err)
	}
	return fmt.Sprintf("unavailable: %v; procmesh attests from /proc alone (attest.connect_record: auto)", err)
}
