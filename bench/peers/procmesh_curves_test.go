package peers

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/procmesh/procmesh/config"
)

// TestProcmeshFairnessCurves loads procmesh's generated configuration with
// procmesh's own loader: with TLSCurves [X25519] it offers X25519 alone
// (ANCHORS "Fairness"), also when -procmesh-yaml brings an upstream mapping
// of its own, whose keys are kept; a tls_curves in that YAML wins.
func TestProcmeshFairnessCurves(t *testing.T) {
	for _, tt := range []struct {
		name, extra string
		curves      []string
		want        []tls.CurveID
		wantIdle    int
	}{
		{"no extra YAML", "", []string{"X25519"}, []tls.CurveID{tls.X25519}, 64},
		{"extra upstream, flow style", "upstream: {max_idle_per_pool: 128}", []string{"X25519"}, []tls.CurveID{tls.X25519}, 128},
		{"extra upstream, block style, other keys", "runtime:\n  gc_percent: 400\nupstream:\n  max_idle_per_pool: 8\n", []string{"X25519"}, []tls.CurveID{tls.X25519}, 8},
		{"extra sets its own curves", "upstream: {tls_curves: [P-256]}", []string{"X25519"}, []tls.CurveID{tls.CurveP256}, 64},
		{"build without the key", "upstream: {max_idle_per_pool: 16}", nil, nil, 16},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := testInputs()
			in.Dir = dir
			p := Procmesh{Inputs: in, StateDir: filepath.Join(dir, "state"),
				Clients: map[string]string{"loadgen": "/usr/bin/true"}, ColdUIDs: []int{200000},
				TLSCurves: tt.curves, Extra: tt.extra}
			file := filepath.Join(dir, "procmesh.yaml")
			if err := os.WriteFile(file, []byte(p.Config()), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(file)
			if err != nil {
				t.Fatalf("procmesh rejects the generated config: %v\n%s", err, p.Config())
			}
			if !slices.Equal(cfg.Upstream.TLSCurves, tt.want) {
				t.Errorf("upstream.tls_curves = %v, want %v", cfg.Upstream.TLSCurves, tt.want)
			}
			if cfg.Upstream.MaxIdlePerPool != tt.wantIdle {
				t.Errorf("upstream.max_idle_per_pool = %d, want %d (the extra YAML's)", cfg.Upstream.MaxIdlePerPool, tt.wantIdle)
			}
		})
	}
}

// TestProcmeshExtraKept: extra YAML procmesh rejects is passed on as it is,
// so that procmesh check names the problem.
func TestProcmeshExtraKept(t *testing.T) {
	p := Procmesh{Inputs: testInputs(), TLSCurves: []string{"X25519"}, Extra: "runtime: {gc_percent: 400}"}
	mustContain(t, "procmesh.yaml", p.Config(), "upstream:\n  tls_curves: [X25519]\n", "# Added with -procmesh-yaml:\nruntime: {gc_percent: 400}\n")
	p.Extra = "upstream: [not, a, mapping]"
	mustContain(t, "procmesh.yaml", p.Config(), "upstream:\n  tls_curves: [X25519]\n", "upstream: [not, a, mapping]\n")
}
