package suite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/procmesh/procmesh/bench/report"
	"github.com/procmesh/procmesh/bench/upstream"
)

func TestRotateAlternatesWhoGoesFirst(t *testing.T) {
	e := &env{contenders: []*contestant{
		{name: "procmesh", status: "ok"}, {name: "haproxy", status: "ok"},
		{name: "envoy", status: "not installed"}, {name: "direct", status: "ok"},
	}}
	var firsts []string
	for trial := range 3 {
		order := e.rotate("keepalive", trial)
		if len(order) != 3 {
			t.Fatalf("trial %d runs %d contestants, want the 3 that are running", trial, len(order))
		}
		firsts = append(firsts, order[0].name)
	}
	if firsts[0] != "procmesh" || firsts[1] != "haproxy" || firsts[2] != "direct" {
		t.Errorf("first per trial = %v, want each running contestant first once", firsts)
	}
}

func TestAttributeHandshakes(t *testing.T) {
	e := &env{contenders: []*contestant{
		{name: report.HAProxy, client: "spiffe://bench.test/haproxy"},
		{name: report.Direct, client: "spiffe://bench.test/direct"},
	}}
	base := upstream.Handshake{Transport: "tcp", Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", Group: "X25519", Offered: "X25519", ALPN: "http/1.1"}
	hs := func(client string, resumed bool, n int) upstream.Handshake {
		h := base
		h.Client, h.Resumed, h.Count = client, resumed, n
		return h
	}
	got := e.attribute([]upstream.Handshake{
		hs("spiffe://bench.test/haproxy", false, 2),
		hs("spiffe://bench.test/haproxy", true, 40),
		hs("spiffe://bench.test/cold/200001", false, 1),
		hs("spiffe://bench.test/cold/200002", false, 1),
		hs("spiffe://bench.test/loadgen", true, 7),
	})
	want := map[string][3]int{ // contestant|client → full, resumed, rows
		"haproxy|spiffe://bench.test/haproxy":  {2, 40, 1},
		"procmesh|spiffe://bench.test/cold/*":  {2, 0, 1},
		"procmesh|spiffe://bench.test/loadgen": {0, 7, 1},
	}
	rows := map[string][3]int{}
	for _, h := range got {
		k := h.Contestant + "|" + h.Client
		r := rows[k]
		rows[k] = [3]int{r[0] + h.Full, r[1] + h.Resumed, r[2] + 1}
	}
	if len(rows) != len(want) {
		t.Fatalf("attribute = %+v", got)
	}
	for k, w := range want {
		if rows[k] != w {
			t.Errorf("%s: full, resumed, rows = %v, want %v", k, rows[k], w)
		}
	}
}

func TestPresetsRunEveryScenario(t *testing.T) {
	for _, c := range []Config{Quick(), Full()} {
		for _, id := range []string{"l4", "keepalive", "rate", "h2h3", "cold", "memory"} {
			if !c.wants(id) {
				t.Errorf("%s preset skips %s", c.Mode, id)
			}
		}
		if c.Trials < 2 || c.KAConns != 64 || c.Rate != 1000 {
			t.Errorf("%s preset: %d trials, %d connections, %.0f req/s; the issue asks for alternating trials, 64 connections and 1,000 req/s", c.Mode, c.Trials, c.KAConns, c.Rate)
		}
	}
	if f := Full(); f.IdleConns != 10000 || f.CachedProcs != 10000 || !f.Profile {
		t.Errorf("full preset: %d idle connections, %d cached processes, profile %v; want 10,000, 10,000, true", f.IdleConns, f.CachedProcs, f.Profile)
	}
	only := Config{Only: []string{"cold"}}
	if only.wants("l4") || !only.wants("cold") {
		t.Error("-only does not limit the scenarios")
	}
}

func TestRunNameNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	if got := runName(dir, day, "full", ""); got != "2026-11-22" {
		t.Errorf("first full run = %q", got)
	}
	if got := runName(dir, day, "quick", ""); got != "2026-11-22-quick" {
		t.Errorf("first quick run = %q", got)
	}
	for _, f := range []string{"2026-11-22.json", "2026-11-22-2.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := runName(dir, day, "full", ""); got != "2026-11-22-3" {
		t.Errorf("third full run of the day = %q, want 2026-11-22-3", got)
	}
	if got := runName(dir, day, "quick", "caddy"); got != "2026-11-22-quick-caddy" {
		t.Errorf("labelled quick run = %q, want 2026-11-22-quick-caddy", got)
	}
}

// TestPresetsFitTheirBudget keeps the presets within what the Makefile
// promises: `make bench` under 10 minutes, `make bench-quick` under 2,
// with a margin for building. The full preset's estimate runs about a
// minute over what a run takes on a quiet machine (2026-12-05-s9-1: 9 min
// 3 s with -variants, estimated 10 min 6 s), which is the margin for a
// loaded one.
func TestPresetsFitTheirBudget(t *testing.T) {
	if d := Full().Estimate(); d > 9*time.Minute+15*time.Second {
		t.Errorf("the full preset needs about %s, over the 9 min 15 s that leave room for builds in 10 minutes", d)
	}
	if d := Quick().Estimate(); d > 105*time.Second {
		t.Errorf("the quick preset needs about %s, over the 105 s that leave room for builds in 2 minutes", d)
	}
}

// TestVariantsRunWhereTheProtectionCosts checks that the procmesh variants
// take part in the keep-alive (Go client), fixed-rate and cold-identity
// scenarios only, that they are off in both presets (-variants turns them
// on) and that the estimate counts them.
func TestVariantsRunWhereTheProtectionCosts(t *testing.T) {
	e := &env{contenders: []*contestant{
		{name: report.Procmesh, status: "ok"},
		{name: report.ProcmeshNoRecord, status: "ok", scenarios: variantScenarios},
		{name: report.Caddy, status: "ok"},
	}}
	for id, want := range map[string]int{"l4": 2, "keepalive": 3, "keepalive-h2load": 2, "rate": 3, "h2h3": 2, "cold": 3, "memory": 2} {
		if got := len(e.rotate(id, 0)); got != want {
			t.Errorf("%s runs %d contestants, want %d", id, got, want)
		}
	}
	for _, c := range []Config{Quick(), Full()} {
		if c.Variants {
			t.Errorf("the %s preset runs the variants; they are opt-in (-variants)", c.Mode)
		}
		with := c
		with.Variants = true
		if with.Estimate() <= c.Estimate() {
			t.Errorf("%s: the estimate does not count the variants", c.Mode)
		}
	}
	for name, want := range map[string]bool{
		report.Procmesh: true, report.ProcmeshNoRecord: true, profileInstance: true,
		report.ProcmeshNoRecord + knownSuffix: false, report.Procmesh + knownSuffix: false, report.Caddy: false,
	} {
		if got := isProcmeshInstance(name); got != want {
			t.Errorf("isProcmeshInstance(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestIndexKeepsNotes checks that rewriting results/README.md keeps what
// was written by hand after a run's links, and lists the runs by the time
// they started (not the files' times, which a checkout makes equal).
func TestIndexKeepsNotes(t *testing.T) {
	dir := t.TempDir()
	for f, started := range map[string]string{"2026-12-03-quick-2.json": "2026-12-03T12:00:00Z", "2026-12-03-quick-3.json": "2026-12-03T11:00:00Z"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(`{"started": "`+started+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := "# Benchmark results\n\n- [2026-12-03-quick-2](2026-12-03-quick-2.md) ([JSON](2026-12-03-quick-2.json)) — before the change\n"
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeIndex(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"- [2026-12-03-quick-2](2026-12-03-quick-2.md) ([JSON](2026-12-03-quick-2.json)) — before the change\n" +
			"- [2026-12-03-quick-3](2026-12-03-quick-3.md) ([JSON](2026-12-03-quick-3.json))\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("index lacks %q:\n%s", want, b)
		}
	}
}

// TestInboundIsOptIn checks that neither preset runs the inbound scenario
// (their budgets leave no room for it), that -only inbound and -inbound
// add it, and that the estimate counts it when it runs.
func TestInboundIsOptIn(t *testing.T) {
	for _, c := range []Config{Quick(), Full()} {
		if c.wants("inbound") {
			t.Errorf("the %s preset runs the inbound scenario; it is opt-in", c.Mode)
		}
		only := c
		only.Only = []string{"inbound"}
		if !only.wants("inbound") || only.wants("keepalive") {
			t.Errorf("%s with -only inbound: inbound %v, keepalive %v; want only inbound", c.Mode, only.wants("inbound"), only.wants("keepalive"))
		}
		with := c
		with.Inbound = true
		if !with.wants("inbound") || !with.wants("keepalive") {
			t.Errorf("%s with -inbound does not add the scenario to the others", c.Mode)
		}
		if with.Estimate() <= c.Estimate() {
			t.Errorf("%s: the estimate does not count the inbound scenario", c.Mode)
		}
	}
}

// TestNewConnRequestCloses checks the handshake-per-request loop's request
// asks the server to close, so a terminator does not keep a connection the
// client will not use again.
func TestNewConnRequestCloses(t *testing.T) {
	req := string(newConnRequest("inbound.bench.test", "/1k"))
	if !strings.HasPrefix(req, "GET /1k HTTP/1.1\r\n") || !strings.Contains(req, "\r\nConnection: close\r\n") || !strings.HasSuffix(req, "\r\n\r\n") {
		t.Errorf("request = %q", req)
	}
}
