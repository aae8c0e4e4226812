package main

import (
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/workload"
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
	var target *requestTarget
	if *rawURL != "" {
		var err error
		if target, err = parseTarget(*rawURL); err != nil {
			fmt.Fprintf(stderr, "procmesh explain: -url: %v\n", err)
			return 2
		}
		target.method = *method
		if target.method == "" {
			target.method = http.MethodGet
		}
		target.header = http.Header(headers)
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
	defer w.Flush()
	fmt.Fprintf(w, "process\t%d\n", proc.PID)
	fmt.Fprintf(w, "exe\t%s\n", proc.ExePath)
	fmt.Fprintf(w, "uid/gid\t%d/%d\n", proc.UID, proc.GID)
	if proc.Cgroup != "" {
		fmt.Fprintf(w, "cgroup\t%s\n", proc.Cgroup)
	}
	fmt.Fprintf(w, "connect record\t%s\n", recordStatus(cfg.Attest.ConnectRecord))
	fmt.Fprintln(w, "selectors")
	for _, s := range proc.Selectors {
		fmt.Fprintf(w, "\t%s\n", s)
	}
	if proc.ExePathForeign {
		fmt.Fprintf(w, "path\tno unix:path: %s is not this executable in procmesh's mount namespace\n", proc.ExePath)
	}
	var id spiffeid.ID
	if cfg.Identity.Provider == "spire" {
		var ok bool
		if id, ok = explainSPIRE(w, cfg, att, fp); !ok {
			return 0
		}
	} else {
		entry, matched := reg.MatchProcess(proc.Selectors, workload.Needs(proc))
		if !matched {
			fmt.Fprintln(w, "entry\tnone: procmesh refuses this process (403 listing the selectors above)")
			for _, r := range (&workload.NoMatchError{Process: proc, Refused: reg.Refusing(proc.Selectors, workload.Needs(proc))}).Reasons() {
				fmt.Fprintf(w, "\t%s\n", r)
			}
			return 0
		}
		wl := cfg.Workloads[entry.Index]
		fmt.Fprintf(w, "entry\tworkloads[%d] (%s:%d)\n", entry.Index, cfg.Path, wl.Line)
		id = entry.ID
	}
	fmt.Fprintf(w, "spiffe_id\t%s\n", id)
	req := policy.Request{Source: id, Selectors: proc.Selectors}
	if target != nil {
		explainRequest(w, cfg, pol, req, target)
	} else {
		explainRoutes(w, cfg, pol, req)
	}
	return 0
}

// explainRoutes prints, per route, what a connection gets and which rules
// could allow this caller's HTTP requests, with their conditions.
func explainRoutes(w io.Writer, cfg *config.Config, pol *policy.Policy, req policy.Request) {
	fmt.Fprintf(w, "policy\tdefault %s\n", cfg.Policy.Default)
	for _, r := range cfg.Routes {
		req.Route, req.Connection = r.Name, true
		d, steps := pol.Trace(req)
		fmt.Fprintf(w, "\t%s (%s)\tconnections: %s\t%s\n", r.Name, r.Protocol, d.Verdict(), d.Rule+": "+d.Reason)
		if r.Protocol == "tcp" {
			continue
		}
		for _, s := range steps {
			if s.Failed == "connection" {
				fmt.Fprintf(w, "\t\trequests: %s\t%s\n", ruleLabel(cfg, s), conditions(cfg.Policy.Rules[s.Index]))
			}
		}
	}
}

// explainRequest decides one request as the proxy would.
func explainRequest(w io.Writer, cfg *config.Config, pol *policy.Policy, req policy.Request, t *requestTarget) {
	fmt.Fprintf(w, "request\t%s %s\n", t.method, t.url)
	var route *config.Route
	for i := range cfg.Routes {
		if cfg.Routes[i].Host == t.host {
			route = &cfg.Routes[i]
		}
	}
	if route == nil {
		fmt.Fprintf(w, "route\tnone: no route has host %q; procmesh refuses it (403) and is never an open proxy\n", t.host)
		return
	}
	fmt.Fprintf(w, "route\t%s (%s, %s:%d)\n", route.Name, route.Protocol, cfg.Path, route.Line)
	req.Route = route.Name
	if j := route.JWTSVID; j.On() {
		fmt.Fprintf(w, "token\tthe caller's JWT-SVID for %s in %s (jwt_svid); a %s the client sends is dropped before policy\n",
			strings.Join(j.Audience, " "), j.Header, j.Header)
		t.header = t.header.Clone()
		t.header.Del(j.Header)
		if t.method == http.MethodConnect {
			fmt.Fprintf(w, "kind\trefused (403): route %s attaches a JWT-SVID to each HTTP request, which a tunnel cannot carry\n", route.Name)
			return
		}
	}
	switch {
	case t.method == http.MethodConnect:
		req.Connection = true
		fmt.Fprintln(w, "kind\tconnection (CONNECT tunnel): rules with methods, paths or headers do not apply")
	case route.Protocol == "tcp":
		fmt.Fprintf(w, "kind\trefused (400): route %s speaks tcp, not HTTP; a CONNECT tunnel or its socket would be decided as:\n", route.Name)
		req.Connection = true
	default:
		norm, err := policy.NormalizePath(t.rawPath)
		if err != nil {
			fmt.Fprintf(w, "path\trefused (400): %s\n", err.(*policy.PathError).Reason)
			return
		}
		if norm != t.rawPath {
			fmt.Fprintf(w, "path\t%s (normalised from %s; the upstream receives %s)\n", norm, t.rawPath, norm)
		} else {
			fmt.Fprintf(w, "path\t%s\n", norm)
		}
		req.Method, req.Path, req.Header = t.method, norm, t.header
	}
	d, steps := pol.Trace(req)
	if len(steps) == 0 {
		fmt.Fprintf(w, "rules\tnone names route %s\n", route.Name)
	} else {
		fmt.Fprintln(w, "rules\t(in the order tried: enforce rules, then audit rules)")
	}
	for _, s := range steps {
		result := "matches, but another rule decides first"
		switch {
		case s.Decides:
			result = "matches  <- decides"
		case s.Failed != "":
			result = "no: " + failure(s.Failed)
		}
		fmt.Fprintf(w, "\t%s\t%s\t%s\n", ruleLabel(cfg, s), result, conditions(cfg.Policy.Rules[s.Index]))
	}
	fmt.Fprintf(w, "decision\t%s by %s\n", d.Verdict(), d.Rule)
	fmt.Fprintf(w, "reason\t%s\n", d.Reason)
}

func ruleLabel(cfg *config.Config, s policy.Step) string {
	return fmt.Sprintf("%s [%s, %s:%d]", s.Rule, s.Mode, cfg.Path, cfg.Policy.Rules[s.Index].Line)
}

func failure(cond string) string {
	switch cond {
	case "from":
		return "caller's ID is not in from"
	case "selectors":
		return "process lacks a selector"
	case "connection":
		return "sets methods, paths or headers, which a connection has not"
	}
	return cond + " do not match"
}

// conditions summarises a rule's request conditions.
func conditions(r config.Rule) string {
	var parts []string
	if len(r.Methods) > 0 {
		parts = append(parts, strings.Join(r.Methods, ","))
	}
	if len(r.Paths) > 0 {
		parts = append(parts, strings.Join(r.Paths, ","))
	}
	if len(r.Headers) > 0 {
		var hs []string
		for k, v := range r.Headers {
			hs = append(hs, k+"="+v)
		}
		slices.Sort(hs)
		parts = append(parts, strings.Join(hs, ","))
	}
	if len(parts) == 0 {
		return "any request or connection"
	}
	return strings.Join(parts, " ")
}

// requestTarget is -url split the way the proxy splits a request.
type requestTarget struct {
	url, host, rawPath, method string
	header                     http.Header
}

// parseTarget keeps the path exactly as written (url.Parse would decode
// %2F), since normalising it is part of what explain shows.
func parseTarget(s string) (*requestTarget, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("%q: write it as http://HOST/PATH (clients send http:// to procmesh, which adds the mTLS)", s)
	}
	rest := s[len(u.Scheme)+len("://"):]
	raw := ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		raw = rest[i:]
	}
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" {
		raw = "/"
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	return &requestTarget{url: s, host: host, rawPath: raw}, nil
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
