package report

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/procmesh/procmesh/bench/stats"
)

var displayNames = map[string]string{
	Procmesh: "procmesh",
	HAProxy:  "HAProxy",
	Nginx:    "nginx",
	Envoy:    "Envoy",
	Caddy:    "Caddy",
	Direct:   "direct mTLS",

	ProcmeshNoRecord: "procmesh, connect_record off",
	ProcmeshFWAttest: "procmesh, foreign_writer attest",
}

// Display returns the column heading of a contestant.
func Display(name string) string {
	if d, ok := displayNames[name]; ok {
		return d
	}
	// A variant's row of a derived figure: "procmesh-norecord (known
	// uid)".
	if i := strings.Index(name, " ("); i > 0 {
		if d, ok := displayNames[name[:i]]; ok {
			return d + name[i:]
		}
	}
	return name
}

// order sorts contestants: procmesh and its variants first, then HAProxy,
// nginx, Envoy, Caddy, direct, then anything else by name.
func order(name string) int {
	switch {
	case name == Procmesh:
		return 0
	case strings.HasPrefix(name, Procmesh):
		return 1
	case name == HAProxy:
		return 2
	case name == Nginx:
		return 3
	case name == Envoy:
		return 4
	case name == Caddy:
		return 5
	case name == Direct:
		return 6
	}
	return 7
}

func sortContestants(names []string) {
	slices.SortStableFunc(names, func(a, b string) int {
		if d := order(a) - order(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
}

// columns returns the contestants that appear in any metric of s.
func (s *Scenario) columns() []string {
	var names []string
	for _, m := range s.Metrics {
		for _, r := range m.Rows {
			if !slices.Contains(names, r.Contestant) {
				names = append(names, r.Contestant)
			}
		}
	}
	sortContestants(names)
	return names
}

// FormatValue renders a figure with the precision its unit calls for.
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case "req/s":
		return thousands(int64(math.Round(v)))
	case "Gbit/s", "MB":
		return strconv.FormatFloat(v, 'f', 2, 64)
	case "µs", "µs/req", "KiB/conn", "KiB/process", "bytes/conn", "bytes/process":
		if math.Abs(v) >= 100 {
			return thousands(int64(math.Round(v)))
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func cell(s *stats.Summary, unit string) string {
	if s == nil {
		return ""
	}
	if s.N == 1 {
		return FormatValue(s.Median, unit)
	}
	return fmt.Sprintf("%s (%s–%s)", FormatValue(s.Median, unit), FormatValue(s.Min, unit), FormatValue(s.Max, unit))
}

func ratioCell(s *stats.Summary) string {
	if s == nil {
		return ""
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	if s.N == 1 {
		return f(s.Median) + "×"
	}
	return fmt.Sprintf("%s× (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

// Markdown renders the run as the Markdown report.
func (r *Run) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# procmesh benchmark, %s (%s)\n\n", r.Date, r.Mode)
	fmt.Fprintf(&b, "%d CPUs (%s), kernel %s, %s. Load average before %s, after %s. "+
		"Processes the suite did not start used **%.2f cores** on average during the run",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.Go, r.Machine.LoadBefore, r.Machine.LoadAfter, r.Machine.OtherCores)
	if r.Machine.OtherCores > 0.1 {
		b.WriteString(": **the machine was shared, treat the figures as noisy**")
	}
	fmt.Fprintf(&b, ". %d trial(s) per figure, contestants alternated within each trial; cells are median (min–max) over trials, ratios are taken trial by trial.\n\n", r.Settings.Trials)

	if r.Settings.ProcmeshBuild != "" {
		fmt.Fprintf(&b, "procmesh built from `%s` (`git describe --dirty` of the source tree; the binary may have been given with BENCH_PROCMESH).\n\n", r.Settings.ProcmeshBuild)
	}
	if r.Settings.ProcmeshTuning != "" {
		fmt.Fprintf(&b, "**procmesh tuned for this run:** `%s`.\n\n", r.Settings.ProcmeshTuning)
	}
	b.WriteString("| contestant | version | workers | status |\n|---|---|---|---|\n")
	for _, c := range r.Contestants {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", Display(c.Name), c.Version, c.Workers, c.Status)
	}
	b.WriteString("\n")

	for _, s := range r.Scenarios {
		r.scenarioMarkdown(&b, s)
	}
	if len(r.Handshakes) > 0 {
		b.WriteString("## Fairness check: handshakes the upstream saw\n\n")
		b.WriteString("Every client handshake the upstream accepted, by the client's SPIFFE ID: the negotiated version, cipher and group must be the same for all (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519). *Groups offered* is the client's list; key shares are computed for the first ones it prefers.\n\n")
		total, odd := 0, 0
		for _, h := range r.Handshakes {
			total += h.Full + h.Resumed
			if h.Version != "TLS 1.3" || h.Cipher != "TLS_AES_128_GCM_SHA256" || h.Group != "X25519" {
				odd += h.Full + h.Resumed
			}
		}
		if odd == 0 {
			fmt.Fprintf(&b, "**All %d handshakes negotiated TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519.**\n\n", total)
		} else {
			fmt.Fprintf(&b, "**%d of %d handshakes did not negotiate TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519: the comparison is not fair.**\n\n", odd, total)
		}
		b.WriteString("| contestant | client ID | transport | TLS | cipher | group | groups offered | ALPN | full | resumed |\n|---|---|---|---|---|---|---|---|---:|---:|\n")
		for _, h := range r.Handshakes {
			alpn := h.ALPN
			if alpn == "" {
				alpn = "–"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n",
				Display(h.Contestant), h.Client, h.Transport, h.Version, h.Cipher, h.Group, h.Offered, alpn, h.Full, h.Resumed)
		}
		b.WriteString("\n")
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(&b, "## procmesh profile: %s (%s)\n\n%s\n\n", p.Name, p.Kind, p.Load)
		if p.Error != "" {
			fmt.Fprintf(&b, "Not taken: %s\n\n", p.Error)
			continue
		}
		fmt.Fprintf(&b, "`%s`\n\n```\n%s\n```\n\n", p.File, strings.TrimSpace(p.Top))
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	if len(r.Errors) > 0 {
		b.WriteString("## Errors during the run\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r *Run) scenarioMarkdown(b *strings.Builder, s *Scenario) {
	fmt.Fprintf(b, "## %s\n\n%s\n\n", s.Title, s.How)
	cols := s.columns()
	b.WriteString("| |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", Display(c))
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	var notes []string
	noteIndex := func(text string) int {
		if i := slices.Index(notes, text); i >= 0 {
			return i + 1
		}
		notes = append(notes, text)
		return len(notes)
	}
	for _, m := range s.Metrics {
		arrow := "↑"
		if m.Better == "lower" {
			arrow = "↓"
		}
		fmt.Fprintf(b, "| **%s**, %s %s |", m.Title, m.Unit, arrow)
		for _, c := range cols {
			r := findRow(m, c)
			switch {
			case r == nil:
				b.WriteString(" |")
			case r.NA != "":
				label := "n/a"
				if r.NA == "not installed" {
					label = "not installed"
				}
				fmt.Fprintf(b, " %s [%d] |", label, noteIndex(r.NA))
			default:
				txt := cell(r.Summary, m.Unit)
				if r.Note != "" {
					txt += fmt.Sprintf(" [%d]", noteIndex(r.Note))
				}
				fmt.Fprintf(b, " %s |", txt)
			}
		}
		b.WriteString("\n")
		for _, ratio := range m.Ratios {
			fmt.Fprintf(b, "| × %s |", Display(ratio))
			for _, c := range cols {
				r := findRow(m, c)
				var rs *stats.Summary
				if r != nil && r.NA == "" {
					switch ratio {
					case Direct:
						rs = r.VsDirect
					case Procmesh:
						rs = r.VsProcmesh
					default:
						rs = r.VsHAProxy
					}
				}
				fmt.Fprintf(b, " %s |", ratioCell(rs))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
	for i, n := range notes {
		fmt.Fprintf(b, "[%d] %s  \n", i+1, n)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(b, "%s  \n", n)
	}
	if len(notes) > 0 || len(s.Notes) > 0 {
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "![%s](%s-%s.svg)\n\n", s.Title, r.Date, s.ID)
}

func findRow(m *Metric, c string) *Row {
	for _, r := range m.Rows {
		if r.Contestant == c {
			return r
		}
	}
	return nil
}
