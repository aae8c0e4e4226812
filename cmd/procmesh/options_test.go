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
		got := proxyOptions(cfg, zerolog.Nop()).Upstream.TLSCurves
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
		if got := proxyOptions(cfg, zerolog.Nop()).Upstream.TLSMaxRecords; got != want {
			t.Errorf("%q: Upstream.TLSMaxRecords = %v, want %v", extra, got, want)
		}
	}
}

// TestProxyOptionsF11P9: limits.max_unattested_connections_per_uid and
// upstream.request_headers_to_remove reach the proxy; without the keys it
// gets their defaults, and [] stays an empty list (remove none).
func TestProxyOptionsF11P9(t *testing.T) {
	for _, tt := range []struct {
		extra  string
		perUID int
		remove []string
	}{
		{"", 64, []string{"X-Forwarded-Client-Cert", "X-Spiffe-Id", "X-Client-Spiffe-Id", "X-Real-Ip"}},
		{"limits: {max_unattested_connections_per_uid: 8}\nupstream: {request_headers_to_remove: [x-caller]}\n", 8, []string{"X-Caller"}},
		{"upstream: {request_headers_to_remove: []}\n", 64, []string{}},
	} {
		path, _ := writeConfig(t, tt.extra)
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		o := proxyOptions(cfg, zerolog.Nop())
		if o.MaxUnattestedConnectionsPerUID != tt.perUID || o.RequestHeadersToRemove == nil || !slices.Equal(o.RequestHeadersToRemove, tt.remove) {
			t.Errorf("%q: MaxUnattestedConnectionsPerUID %d, RequestHeadersToRemove %#v; want %d, %#v",
				tt.extra, o.MaxUnattestedConnectionsPerUID, o.RequestHeadersToRemove, tt.perUID, tt.remove)
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
