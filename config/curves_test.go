package config

import (
	"crypto/tls"
	"slices"
	"testing"
)

// TestCurveValues: the names operators write, in any case, become the
// CurveIDs crypto/tls offers; absent, null and [] leave Go's default.
func TestCurveValues(t *testing.T) {
	const head = "trust_domain: example.org\n"
	for _, tt := range []struct {
		name, src string
		want      []tls.CurveID
	}{
		{"absent", head, nil},
		{"null", head + "upstream: {tls_curves: null}\n", nil},
		{"empty", head + "upstream: {tls_curves: []}\n", nil},
		{"x25519 only", head + "upstream: {tls_curves: [X25519]}\n", []tls.CurveID{tls.X25519}},
		{"every name", head + "upstream:\n  tls_curves: [X25519, P-256, P-384, P-521, X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024]\n",
			[]tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521, tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024}},
		{"openssl and go spellings, any case", head + "upstream: {tls_curves: [prime256v1, SECP384R1, curvep521, x25519mlkem768]}\n",
			[]tls.CurveID{tls.CurveP256, tls.CurveP384, tls.CurveP521, tls.X25519MLKEM768}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.yaml", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Upstream.TLSCurves, tt.want) {
				t.Fatalf("TLSCurves = %v, want %v", c.Upstream.TLSCurves, tt.want)
			}
		})
	}
}

// TestCurveErrors compares the exact message for each bad tls_curves.
func TestCurveErrors(t *testing.T) {
	const head = "trust_domain: example.org\n"
	for _, tt := range []struct{ name, src, want string }{
		{"unknown name", head + "upstream:\n  tls_curves: [X25519, P256]\n",
			`test.yaml:3: upstream.tls_curves[1]: "P256" is not a key exchange procmesh knows; use one of X25519, P-256, P-384, P-521, X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024`},
		{"twice under two names", head + "upstream:\n  tls_curves:\n    - P-256\n    - prime256v1\n",
			"test.yaml:5: upstream.tls_curves[1]: P-256 is listed twice"},
		{"not a list", head + "upstream: {tls_curves: X25519}\n",
			`test.yaml:2: upstream.tls_curves: expected a list, got string "X25519"`},
		{"not a string", head + "upstream: {tls_curves: [25519]}\n",
			`test.yaml:2: upstream.tls_curves[0]: expected a string, got integer 25519; quote it: "25519"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseErr(t, tt.src); got != tt.want {
				t.Fatalf("error\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestCurveName: every accepted CurveID has the name messages use.
func TestCurveName(t *testing.T) {
	for id, want := range map[tls.CurveID]string{
		tls.X25519: "X25519", tls.CurveP256: "P-256", tls.SecP384r1MLKEM1024: "SecP384r1MLKEM1024", tls.CurveID(9999): "CurveID(9999)",
	} {
		if got := curveName(id); got != want {
			t.Errorf("curveName(%d) = %q, want %q", id, got, want)
		}
	}
}
