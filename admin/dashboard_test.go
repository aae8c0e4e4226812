package admin

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// exprs collects every "expr" and templating "query" string in a JSON tree.
func exprs(v any, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
				*out = append(*out, s)
			}
			exprs(x, out)
		}
	case []any:
		for _, x := range v {
			exprs(x, out)
		}
	}
}

// TestDashboardNamesRealMetrics: every procmesh_ metric the Grafana
// dashboard queries is one a Monitor exposes, with every Source present
// and one event of each kind seen (vectors without samples are not
// exposed).
func TestDashboardNamesRealMetrics(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/procmesh.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var qs []string
	exprs(dash, &qs)
	if len(qs) < 10 {
		t.Fatalf("only %d queries found in the dashboard", len(qs))
	}

	id := spiffeid.RequireFromString("spiffe://example.org/a")
	exp := map[spiffeid.ID]time.Time{id: time.Now().Add(time.Hour)}
	m := NewMonitor("test", 10, Sources{
		Resolver: func() workload.Stats { return workload.Stats{} },
		Hashes:   func() attest.HashStats { return attest.HashStats{} },
		Proxy:    func() proxy.Stats { return proxy.Stats{} },
		Pools:    func() []proxy.Pool { return []proxy.Pool{{ID: id, Route: "echo", Protocol: "http1"}} },
		Store:    func() tlsconf.StoreStats { return tlsconf.StoreStats{Expiries: exp} },
		SPIRE:    func() spire.Stats { return spire.Stats{AgentUp: true, Expiries: exp} },
	})
	m.Observe(proxy.Event{Kind: "request", Route: "echo", ID: id, Decision: "allow", Status: 502, Err: errors.New("x")})
	m.Observe(proxy.Event{Kind: "connection", Decision: "deny", Refusal: errors.New("x")})
	m.Reloaded("test", nil)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	re := regexp.MustCompile(`procmesh_[a-z0-9_]+`)
	for _, q := range qs {
		for _, name := range re.FindAllString(q, -1) {
			if !names[name] {
				t.Errorf("the dashboard queries %s, which procmesh does not expose: %s", name, q)
			}
		}
	}
}
