// Package explain shows how procmesh sees a running process: its
// selectors, the registration entry it matches (or what SPIRE answers for
// it), its SPIFFE ID, and the policy decision for every route or for one
// request, with the rules tried. `procmesh explain` prints it; the admin
// listener's /explain?pid=N serves the same text.
package explain

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/workload"
)

// Node is what an explanation reads: the config and what was built from
// it, and the attestor the proxy uses.
type Node struct {
	Config   *config.Config
	Registry *registry.Registry
	Policy   *policy.Policy
	Attestor *attest.Attestor
	// ConnectRecord says whether connect-time records are kept (THREATS
	// I11), as one line.
	ConnectRecord string
}

// Process attests pid as the proxy would and writes, as aligned columns,
// how procmesh sees it and decides its connections, or the request t
// when t is not nil. It fails only when the process cannot be attested.
func Process(out io.Writer, n Node, pid int32, target *Target) error {
	cfg := n.Config
	peer, err := n.Attestor.PeerFromPID(pid)
	if err != nil {
		return err
	}
	defer peer.Close()
	fp, err := n.Attestor.Fingerprint(peer)
	if err != nil {
		return err
	}
	proc, err := n.Attestor.Attest(peer, fp)
	if err != nil {
		return err
	}

	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "process\t%d\n", proc.PID)
	fmt.Fprintf(w, "exe\t%s\n", proc.ExePath)
	fmt.Fprintf(w, "uid/gid\t%d/%d\n", proc.UID, proc.GID)
	if proc.Cgroup != "" {
		fmt.Fprintf(w, "cgroup\t%s\n", proc.Cgroup)
	}
	fmt.Fprintf(w, "connect record\t%s\n", n.ConnectRecord)
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
		if id, ok = identifySPIRE(w, cfg, n.Attestor, fp); !ok {
			return nil
		}
	} else {
		entry, matched := n.Registry.MatchProcess(proc.Selectors, workload.Needs(proc))
		if !matched {
			fmt.Fprintln(w, "entry\tnone: procmesh refuses this process (403 listing the selectors above)")
			for _, r := range (&workload.NoMatchError{Process: proc, Refused: n.Registry.Refusing(proc.Selectors, workload.Needs(proc))}).Reasons() {
				fmt.Fprintf(w, "\t%s\n", r)
			}
			return nil
		}
		wl := cfg.Workloads[entry.Index]
		fmt.Fprintf(w, "entry\tworkloads[%d] (%s:%d)\n", entry.Index, cfg.Path, wl.Line)
		id = entry.ID
	}
	fmt.Fprintf(w, "spiffe_id\t%s\n", id)
	req := policy.Request{Source: id, Selectors: proc.Selectors}
	if target != nil {
		explainRequest(w, cfg, n.Policy, req, target)
	} else {
		explainRoutes(w, cfg, n.Policy, req)
	}
	return nil
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
func explainRequest(w io.Writer, cfg *config.Config, pol *policy.Policy, req policy.Request, t *Target) {
	fmt.Fprintf(w, "request\t%s %s\n", t.Method, t.url)
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
		t.Header = t.Header.Clone()
		t.Header.Del(j.Header)
		if t.Method == http.MethodConnect {
			fmt.Fprintf(w, "kind\trefused (403): route %s attaches a JWT-SVID to each HTTP request, which a tunnel cannot carry\n", route.Name)
			return
		}
	}
	switch {
	case t.Method == http.MethodConnect:
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
		req.Method, req.Path, req.Header = t.Method, norm, t.Header
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

// Target is one request to explain: a URL split the way the proxy splits
// a request, its method and header.
type Target struct {
	url, host, rawPath string
	Method             string
	Header             http.Header
}

// ParseTarget keeps the path exactly as written (url.Parse would decode
// %2F), since normalising it is part of what explain shows.
func ParseTarget(s string) (*Target, error) {
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
	return &Target{url: s, host: host, rawPath: raw}, nil
}
