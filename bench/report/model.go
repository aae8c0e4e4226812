// Package report holds the results of one benchmark run and renders them:
// JSON (the record), a Markdown table with ratios to HAProxy and to direct
// TLS, and hand-written SVG bar charts.
//
// It leaves out measuring (packages load, procstat) and the arithmetic of
// summaries (package stats), which it only calls.
package report

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/procmesh/procmesh/bench/stats"
)

// Contestant names, in the order tables and charts show them.
const (
	Procmesh = "procmesh"
	HAProxy  = "haproxy"
	Nginx    = "nginx"
	Envoy    = "envoy"
	Caddy    = "caddy"
	Direct   = "direct"
)

// Variants of procmesh measured beside it to show what a protection costs:
// the same build and configuration with one attest setting changed.
const (
	ProcmeshNoRecord = "procmesh-norecord" // attest.connect_record: off
	ProcmeshFWAttest = "procmesh-fwattest" // attest.foreign_writer: attest
)

// VariantBase is the contestant a procmesh variant's row is compared with:
// "procmesh" for "procmesh-norecord", "procmesh (known uid)" for
// "procmesh-norecord (known uid)". ok is false for every other name.
func VariantBase(name string) (base string, ok bool) {
	rest, ok := strings.CutPrefix(name, Procmesh+"-")
	if !ok || rest == "" {
		return "", false
	}
	if i := strings.Index(rest, " ("); i >= 0 {
		return Procmesh + rest[i:], true
	}
	return Procmesh, true
}

// Num is a float64 that is null in JSON when it is NaN (a failed trial).
type Num float64

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *Num) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = Num(math.NaN())
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = Num(f)
	return nil
}

// Run is one run of the suite.
type Run struct {
	Date        string        `json:"date"`
	Mode        string        `json:"mode"` // quick | full
	Started     time.Time     `json:"started"`
	Seconds     float64       `json:"seconds"`
	Machine     Machine       `json:"machine"`
	Settings    Settings      `json:"settings"`
	Contestants []Contestant  `json:"contestants"`
	Handshakes  []Handshake   `json:"handshakes"` // what the upstream negotiated, per client
	Scenarios   []*Scenario   `json:"scenarios"`
	Profiles    []Profile     `json:"profiles,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
	Errors      []string      `json:"errors,omitempty"`
	Labels      LabelOverride `json:"-"`
}

// LabelOverride maps contestant names to display names.
type LabelOverride map[string]string

// Machine describes where the run happened and how busy it was.
type Machine struct {
	CPUs       int      `json:"cpus"`
	CPUModel   string   `json:"cpu_model"`
	Kernel     string   `json:"kernel"`
	Go         string   `json:"go"`
	LoadBefore string   `json:"loadavg_before"`
	LoadAfter  string   `json:"loadavg_after"`
	Versions   []string `json:"versions"`
	// OtherCores is the average number of cores used by processes the
	// suite did not start, over the run: the noise in these figures.
	OtherCores float64 `json:"other_cores"`
}

// Settings are the knobs of the run.
type Settings struct {
	Trials         int    `json:"trials"`
	L4             string `json:"l4"`
	KeepAlive      string `json:"keepalive"`
	FixedRate      string `json:"fixed_rate"`
	H2H3           string `json:"h2_h3"`
	Cold           string `json:"cold"`
	Memory         string `json:"memory"`
	ProcmeshBuild  string `json:"procmesh_build,omitempty"`
	ProcmeshTuning string `json:"procmesh_tuning,omitempty"` // -procmesh-env and -procmesh-yaml of the run
}

// Contestant is one system under test.
type Contestant struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Status  string `json:"status"` // "ok", "not installed", or why it could not run
	Config  string `json:"config,omitempty"`
	Workers string `json:"workers"`
}

// Handshake is what the upstream saw of one kind of client handshake.
type Handshake struct {
	Contestant string `json:"contestant"`
	Client     string `json:"client"`
	Transport  string `json:"transport"`
	Version    string `json:"version"`
	Cipher     string `json:"cipher"`
	Group      string `json:"group"`
	Offered    string `json:"offered_groups"`
	ALPN       string `json:"alpn"`
	Full       int    `json:"full"`    // full handshakes (certificates exchanged)
	Resumed    int    `json:"resumed"` // resumed with a session ticket
}

// Scenario is a group of metrics measured the same way.
type Scenario struct {
	ID      string    `json:"id"`
	Title   string    `json:"title"`
	How     string    `json:"how"`
	Metrics []*Metric `json:"metrics"`
	Notes   []string  `json:"notes,omitempty"`
	// OtherCores is the average number of cores processes the suite did
	// not start used while this scenario ran.
	OtherCores float64 `json:"other_cores"`
}

// Metric is one figure for every contestant.
type Metric struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Unit   string `json:"unit"`
	Better string `json:"better"` // higher | lower
	// Ratios says which ratio rows make sense: "haproxy", "direct", and
	// "procmesh" (filled for procmesh variants only).
	Ratios []string `json:"ratios,omitempty"`
	Rows   []*Row   `json:"rows"`
}

// Row is one contestant's figure: every trial, its summary, and the
// trial-by-trial ratios to HAProxy and to direct.
type Row struct {
	Contestant string         `json:"contestant"`
	Trials     []Num          `json:"trials,omitempty"`
	Summary    *stats.Summary `json:"summary,omitempty"`
	VsHAProxy  *stats.Summary `json:"vs_haproxy,omitempty"`
	VsDirect   *stats.Summary `json:"vs_direct,omitempty"`
	// VsProcmesh is a procmesh variant's figure over procmesh's (the
	// default configuration) in the same trial: what the protection the
	// variant changes costs.
	VsProcmesh *stats.Summary `json:"vs_procmesh,omitempty"`
	NA         string         `json:"na,omitempty"`
	Note       string         `json:"note,omitempty"`
}

// Row returns the metric's row for a contestant, adding it.
func (m *Metric) Row(contestant string) *Row {
	for _, r := range m.Rows {
		if r.Contestant == contestant {
			return r
		}
	}
	r := &Row{Contestant: contestant}
	m.Rows = append(m.Rows, r)
	return r
}

// Add records one trial's value.
func (m *Metric) Add(contestant string, v float64) {
	r := m.Row(contestant)
	r.Trials = append(r.Trials, Num(v))
}

// SetNA marks a contestant as unable to produce the figure, and why.
func (m *Metric) SetNA(contestant, why string) {
	r := m.Row(contestant)
	if r.NA == "" {
		r.NA = why
	}
}

// Finish computes summaries and paired ratios.
func (m *Metric) Finish() {
	trials := func(c string) []float64 {
		for _, r := range m.Rows {
			if r.Contestant == c && r.NA == "" {
				return floats(r.Trials)
			}
		}
		return nil
	}
	hap, direct := trials(HAProxy), trials(Direct)
	for _, r := range m.Rows {
		if r.NA != "" {
			continue
		}
		v := floats(r.Trials)
		if s, ok := stats.Summarize(v); ok {
			r.Summary = &s
		} else {
			r.NA = "no trial succeeded"
			continue
		}
		for _, ratio := range m.Ratios {
			base, into := hap, &r.VsHAProxy
			switch ratio {
			case Direct:
				base, into = direct, &r.VsDirect
			case Procmesh:
				b, ok := VariantBase(r.Contestant)
				if !ok {
					continue
				}
				base, into = trials(b), &r.VsProcmesh
			}
			if base == nil {
				continue
			}
			if s, ok := stats.Summarize(stats.PairedRatios(v, base)); ok {
				*into = &s
			}
		}
	}
}

func floats(ns []Num) []float64 {
	out := make([]float64, len(ns))
	for i, n := range ns {
		out[i] = float64(n)
	}
	return out
}

// Profile is a pprof profile of procmesh under one load, and its top
// entries as `go tool pprof -top` prints them.
type Profile struct {
	Name  string `json:"name"`
	Load  string `json:"load"`
	Kind  string `json:"kind"` // cpu | alloc_space
	File  string `json:"file"`
	Top   string `json:"top"`
	Error string `json:"error,omitempty"`
}
