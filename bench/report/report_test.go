package report

import (
	"encoding/json"
	"encoding/xml"
	"math"
	"strings"
	"testing"
)

func sampleScenario() *Scenario {
	m := &Metric{ID: "rps", Title: "requests", Unit: "req/s", Better: "higher", Ratios: []string{HAProxy, Direct}}
	for i, v := range []float64{1000, 1200, 1100} {
		m.Add(Procmesh, v)
		m.Add(HAProxy, 1000)
		m.Add(Direct, []float64{2000, 2400, math.NaN()}[i])
	}
	m.SetNA(Envoy, "not installed")
	m.SetNA(Nginx, "cannot speak HTTP/2 upstream")
	m.Finish()
	return &Scenario{ID: "ka", Title: "Keep-alive <64>", How: "h2load", Metrics: []*Metric{m}}
}

func TestFinishPairsRatiosByTrial(t *testing.T) {
	s := sampleScenario()
	m := s.Metrics[0]
	pm := m.Row(Procmesh)
	if pm.Summary.Median != 1100 || pm.Summary.Min != 1000 || pm.Summary.Max != 1200 {
		t.Errorf("procmesh summary = %+v", pm.Summary)
	}
	if pm.VsHAProxy.Median != 1.1 {
		t.Errorf("procmesh vs HAProxy = %+v, want median 1.1", pm.VsHAProxy)
	}
	// Trial 3 of direct failed (NaN): only trials 1 and 2 pair, 0.5 and 0.5.
	if pm.VsDirect.N != 2 || pm.VsDirect.Median != 0.5 {
		t.Errorf("procmesh vs direct = %+v, want 2 pairs with median 0.5", pm.VsDirect)
	}
	if m.Row(Envoy).Summary != nil {
		t.Error("a contestant marked n/a got a summary")
	}
}

func TestMarkdownTable(t *testing.T) {
	r := &Run{Date: "2026-11-22", Mode: "quick", Settings: Settings{Trials: 3}, Scenarios: []*Scenario{sampleScenario()}}
	md := r.Markdown()
	for _, want := range []string{
		"| | procmesh | HAProxy | nginx | Envoy | direct mTLS |",
		"| **requests**, req/s ↑ | 1,100 (1,000–1,200) | 1,000 (1,000–1,000) | n/a [1] | not installed [2] | 2,200 (2,000–2,400) |",
		"| × HAProxy | 1.10× (1.00–1.20) | 1.00× (1.00–1.00) |",
		"| × direct mTLS | 0.50× (0.50–0.50) |",
		"[1] cannot speak HTTP/2 upstream",
		"![Keep-alive <64>](2026-11-22-ka.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestSVGIsWellFormed(t *testing.T) {
	svg := sampleScenario().SVG()
	d := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// Background plus one bar for each of procmesh, HAProxy and direct.
	if rects != 4 {
		t.Errorf("SVG has %d rects, want 4", rects)
	}
	if !strings.Contains(svg, "Keep-alive &lt;64&gt;") {
		t.Error("SVG title not escaped")
	}
}

func TestJSONNaNIsNull(t *testing.T) {
	b, err := json.Marshal(sampleScenario())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"trials":[2000,2400,null]`) {
		t.Errorf("failed trial not encoded as null: %s", b)
	}
	var back Scenario
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if v := back.Metrics[0].Row(Direct).Trials[2]; !math.IsNaN(float64(v)) {
		t.Errorf("null decoded as %v, want NaN", v)
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{41234.6, "req/s", "41,235"},
		{3.456, "Gbit/s", "3.46"},
		{87.25, "µs", "87.2"},
		{-12.5, "µs", "-12.5"},
		{1234.4, "µs", "1,234"},
		{-1234.4, "µs", "-1,234"},
		{math.NaN(), "µs", "–"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.v, tt.unit); got != tt.want {
			t.Errorf("FormatValue(%v, %q) = %q, want %q", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestMarkdownFairnessVerdict(t *testing.T) {
	pinned := Handshake{Contestant: HAProxy, Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", Group: "X25519", Full: 2, Resumed: 3}
	r := &Run{Handshakes: []Handshake{pinned}}
	if md := r.Markdown(); !strings.Contains(md, "All 5 handshakes negotiated TLS 1.3, TLS_AES_128_GCM_SHA256 and X25519.") {
		t.Errorf("pinned handshakes not reported as fair:\n%s", md)
	}
	mlkem := pinned
	mlkem.Contestant, mlkem.Group, mlkem.Full, mlkem.Resumed = Procmesh, "X25519MLKEM768", 1, 0
	r.Handshakes = append(r.Handshakes, mlkem)
	if md := r.Markdown(); !strings.Contains(md, "1 of 6 handshakes did not negotiate") {
		t.Errorf("an unpinned handshake was not flagged:\n%s", md)
	}
}

// TestVariantRatios checks that a procmesh variant is compared trial by
// trial with procmesh (its "known uid" row with procmesh's), that no other
// row gets a × procmesh figure, and that Caddy and the variants get their
// columns in order.
func TestVariantRatios(t *testing.T) {
	m := &Metric{ID: "cpu", Title: "CPU", Unit: "µs/req", Better: "lower", Ratios: []string{HAProxy, Procmesh}}
	const known = Procmesh + " (known uid)"
	for i := range 2 {
		m.Add(Procmesh, []float64{100, 200}[i])
		m.Add(ProcmeshNoRecord, []float64{90, 150}[i])
		m.Add(known, []float64{40, 50}[i])
		m.Add(ProcmeshNoRecord+" (known uid)", []float64{20, 50}[i])
		m.Add(HAProxy, 50)
		m.Add(Caddy, 80)
	}
	m.Finish()
	if r := m.Row(ProcmeshNoRecord).VsProcmesh; r == nil || r.Min != 0.75 || r.Max != 0.9 {
		t.Errorf("norecord vs procmesh = %+v, want 0.75–0.9 (paired 90/100, 150/200)", r)
	}
	if r := m.Row(ProcmeshNoRecord + " (known uid)").VsProcmesh; r == nil || r.Min != 0.5 || r.Max != 1 {
		t.Errorf("norecord (known uid) vs procmesh (known uid) = %+v, want 0.5–1", r)
	}
	for _, c := range []string{Procmesh, known, HAProxy, Caddy} {
		if m.Row(c).VsProcmesh != nil {
			t.Errorf("%s got a × procmesh ratio", c)
		}
	}
	r := &Run{Date: "d", Scenarios: []*Scenario{{ID: "x", Title: "x", Metrics: []*Metric{m}}}}
	md := r.Markdown()
	for _, want := range []string{
		"| | procmesh | procmesh (known uid) | procmesh, connect_record off | procmesh, connect_record off (known uid) | HAProxy | Caddy |",
		"| × procmesh |  |  | 0.82× (0.75–0.90) | 0.75× (0.50–1.00) |  |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}
