package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/procmesh/procmesh/admin"
)

// cmdStatus prints the status page of a running procmesh in the terminal:
// it reads /status.json from the admin listener that -admin, or the
// config's admin.listen, names. It exits 0 when procmesh is ready, 3 when
// a readiness check fails (as /readyz would answer 503), 1 when the
// status cannot be read.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlagSet("status", stderr)
	addr := fs.String("admin", "", "the admin listener, host:port or a socket path (default: admin.listen of -config)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" {
		cfg, ok := loadConfig(*path, stderr)
		if !ok {
			return 1
		}
		if cfg.Admin.Listen == "" {
			fmt.Fprintf(stderr, "procmesh status: %s has no admin.listen; set it (like 127.0.0.1:9902) and restart procmesh, or pass -admin\n", cfg.Path)
			return 1
		}
		*addr = cfg.Admin.Listen
	}
	st, err := fetchStatus(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "procmesh status: %v\n", err)
		return 1
	}
	printStatus(stdout, st)
	var failed []string
	for _, c := range st.Ready {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) > 0 {
		// A script can tell "not ready" (3) from "not reachable" (1).
		fmt.Fprintf(stderr, "procmesh status: not ready: %s\n", strings.Join(failed, "; "))
		return 3
	}
	return 0
}

// fetchStatus GETs /status.json from addr.
func fetchStatus(addr string) (*admin.Status, error) {
	tr := &http.Transport{}
	url := "http://" + addr + "/status.json"
	if strings.HasPrefix(addr, "/") {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}
		url = "http://admin/status.json"
	}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, fmt.Errorf("%w; is procmesh running with admin.listen %s?", err, addr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return &st, nil
}

// printStatus writes the status page's sections as aligned columns.
func printStatus(out io.Writer, st *admin.Status) {
	// Each section aligns its own columns.
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	section := func() {
		w.Flush()
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	}
	defer func() { w.Flush() }()
	fmt.Fprintf(w, "procmesh %s, trust domain %s, provider %s, up since %s\n", st.Version, st.TrustDomain, st.Provider, st.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "config: %s, generation %d\n", st.ConfigPath, st.Generation)
	for _, c := range st.Ready {
		state := "ok"
		if !c.OK {
			state = "NOT READY"
		}
		fmt.Fprintf(w, "ready: %s\t%s: %s\n", c.Name, state, c.Detail)
	}
	section()
	fmt.Fprintln(w, "\nIDENTITY\tSVID EXPIRES\tPROCESSES\tPOOLS")
	if len(st.Identities) == 0 {
		fmt.Fprintln(w, "(none: no process has connected)")
	}
	for _, id := range st.Identities {
		exp := "no SVID held"
		if id.SVIDExpiry != nil {
			exp = "in " + id.SVIDExpiry.Sub(st.Now).Round(time.Second).String()
			if !id.SVIDExpiry.After(st.Now) {
				exp = "EXPIRED"
			}
		}
		var pools []string
		for _, p := range id.Pools {
			pools = append(pools, p.Route+" ("+p.Protocol+")")
		}
		rows := max(len(id.Processes), 1)
		for i := range rows {
			proc := "-"
			if i < len(id.Processes) {
				proc = processLine(id.Processes[i])
			}
			if i == 0 {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", id.ID, exp, proc, strings.Join(pools, ", "))
			} else {
				fmt.Fprintf(w, "\t\t%s\t\n", proc)
			}
		}
	}
	section()
	if len(st.Unmatched) > 0 {
		fmt.Fprintln(w, "\nWITHOUT AN IDENTITY\t")
		for _, p := range st.Unmatched {
			fmt.Fprintf(w, "%s\t\n", processLine(p))
		}
	}
	section()
	fmt.Fprintln(w, "\nRECENT REFUSALS\tPID\tKIND\tREASON")
	if len(st.Refusals) == 0 {
		fmt.Fprintln(w, "(none since start)")
	}
	for _, r := range st.Refusals {
		fmt.Fprintf(w, "%s ago\t%d\t%s\t%s (procmesh explain -pid %d)\n", st.Now.Sub(r.At).Round(time.Second), r.PID, r.Kind, r.Reason, r.PID)
	}
	section()
	fmt.Fprintln(w, "\nRELOADS\tASKED BY\tRESULT\tGENERATION")
	if len(st.Reloads) == 0 {
		fmt.Fprintln(w, "(none since start)")
	}
	for _, r := range st.Reloads {
		result := "applied"
		if !r.Applied {
			result = "rejected: " + r.Error
		}
		fmt.Fprintf(w, "%s ago\t%s\t%s\t%d\n", st.Now.Sub(r.At).Round(time.Second), r.Reason, result, r.Generation)
	}
}

func processLine(p admin.Process) string {
	s := fmt.Sprintf("pid %d %s uid %d", p.PID, p.Exe, p.UID)
	if p.Cgroup != "" {
		s += " " + p.Cgroup
	}
	return s
}
