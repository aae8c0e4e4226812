package main

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/config"
)

// TestProxyOptionsCurves: upstream.tls_curves reaches the proxy's upstream
// options; without the key the proxy keeps Go's default (nil).
func TestProxyOptionsCurves(t *testing.T) {
	for _, tt := range []struct {
		extra string
		want  []tls.CurveID
	}{
		{"upstream: {tls_curves: [X25519, P-256]}\n", []tls.CurveID{tls.X25519, tls.CurveP256}},
		{"", nil},
	} {
		path, _ := writeConfig(t, tt.extra)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		got := proxyOptions(cfg, &node{}, zerolog.Nop()).Upstream.TLSCurves
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: Upstream.TLSCurves = %v, want %v", tt.extra, got, tt.want)
		}
	}
}

// TestProxyOptionsRecordSizing: upstream.tls_record_sizing: max turns
// Go's dynamic record sizing off for upstream connections.
func TestProxyOptionsRecordSizing(t *testing.T) {
	for extra, want := range map[string]bool{
		"upstream: {tls_record_sizing: max}\n":     true,
		"upstream: {tls_record_sizing: dynamic}\n": false,
		"": false,
	} {
		path, _ := writeConfig(t, extra)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := proxyOptions(cfg, &node{}, zerolog.Nop()).Upstream.TLSMaxRecords; got != want {
			t.Errorf("%q: Upstream.TLSMaxRecords = %v, want %v", extra, got, want)
		}
	}
}

// TestBuildRegistryNeedsNames: a policy rule's unix:group selector makes
// attestation look names up, though no entry uses one.
func TestBuildRegistryNeedsNames(t *testing.T) {
	for _, tt := range []struct {
		extra string
		want  bool
	}{
		{"", false},
		{"    - name: ops\n      selectors: [\"unix:group:ops\"]\n      to: [echo]\n", true},
	} {
		path, _ := writeConfig(t, tt.extra)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := buildRegistry(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if reg.NeedsNames() != tt.want {
			t.Errorf("%q: NeedsNames() = %v, want %v", tt.extra, reg.NeedsNames(), tt.want)
		}
	}
}
