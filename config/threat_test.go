package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestThreat_I8_EntryTie: two workloads one process could match with the
// same number of selectors are a load error naming both lines; adding a
// separating selector makes the file valid.
func TestThreat_I8_EntryTie(t *testing.T) {
	const head = "trust_domain: example.org\nworkloads:\n"
	tests := []struct {
		name, workloads, want string
	}{
		{"uid vs path",
			"  - spiffe_id: spiffe://example.org/a\n    selectors: [unix:uid:1000]\n" +
				"  - spiffe_id: spiffe://example.org/b\n    selectors: [unix:path:/usr/bin/b]\n",
			"test.yaml:5: workloads[1]: ties with workloads[0] (line 3): one process can match both with 1 selector each and neither wins; give one of them a selector that separates them (the same type with a different value in both, e.g. unix:path or unix:sha256) or an extra selector"},
		{"same selectors, other order",
			"  - {spiffe_id: spiffe://example.org/a, selectors: [unix:uid:1000, unix:gid:5]}\n" +
				"  - {spiffe_id: spiffe://example.org/b, selectors: [unix:gid:5, unix:uid:1000]}\n",
			"test.yaml:4: workloads[1]: has the same selectors as workloads[0] (line 3); remove one"},
		{"supplementary gids do not separate",
			"  - {spiffe_id: spiffe://example.org/a, selectors: [unix:supplementary_gid:1]}\n" +
				"  - {spiffe_id: spiffe://example.org/b, selectors: [unix:supplementary_gid:2]}\n",
			"test.yaml:4: workloads[1]: ties with workloads[0] (line 3): one process can match both with 1 selector each and neither wins; give one of them a selector that separates them (the same type with a different value in both, e.g. unix:path or unix:sha256) or an extra selector"},
		{"separated by path", // no error
			"  - {spiffe_id: spiffe://example.org/a, selectors: [unix:uid:1000, unix:path:/a]}\n" +
				"  - {spiffe_id: spiffe://example.org/b, selectors: [unix:uid:1000, unix:path:/b]}\n", ""},
		{"more selectors wins", // no error
			"  - {spiffe_id: spiffe://example.org/a, selectors: [unix:uid:1000]}\n" +
				"  - {spiffe_id: spiffe://example.org/b, selectors: [unix:uid:1000, unix:path:/b]}\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(head+tc.workloads))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Parse: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("Parse error\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

// TestThreat_I9_NonCanonicalIDInConfig: every place a SPIFFE ID or trust
// domain is written refuses non-canonical forms (CVE-2021-27099 class).
func TestThreat_I9_NonCanonicalIDInConfig(t *testing.T) {
	bad := []string{
		"spiffe://Example.org/x",      // uppercase trust domain
		"spiffe://example.org/a/../b", // dot segment
		"spiffe://example.org/./a",    // dot segment
		"spiffe://example.org/a//b",   // empty segment
		"spiffe://example.org/a/",     // trailing slash
		"spiffe://example.org/a%2Fb",  // percent-encoding
		"spiffe://example.org/a b",    // space
		"SPIFFE://example.org/a",      // scheme case
		"spiffe://user@example.org/a", // userinfo
		"spiffe://example.org:443/a",  // port
		"spiffe://example.org/a?q=1",  // query
		"spiffe://example.org/a#f",    // fragment
		"https://example.org/a",       // scheme
		"spiffe:///a",                 // no trust domain
		"spiffe://example.org",        // no path
		"spiffe://" + strings.Repeat("a", 2048) + "/x",
	}
	places := map[string]string{
		"workloads[0].spiffe_id": "trust_domain: example.org\nworkloads:\n  - {spiffe_id: %q, selectors: [unix:uid:1]}\n",
		"routes[0].server_id":    "trust_domain: example.org\nroutes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: %q}\n",
		"policy.rules[0].from[0]": "trust_domain: example.org\nroutes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: spiffe://example.org/e}\n" +
			"policy:\n  rules:\n    - {from: [%q], to: [e]}\n",
	}
	for key, format := range places {
		for _, id := range bad {
			src := strings.Replace(format, "%q", `"`+id+`"`, 1)
			_, err := Parse("test.yaml", []byte(src))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("%s = %q accepted", key, id)
				continue
			}
			if p := ce.Problems[0]; len(ce.Problems) != 1 || p.Key != key {
				t.Errorf("%s = %q: problems %v; want one for %s", key, id, ce.Problems, key)
			}
		}
	}
	for _, s := range []string{"Example.org", "example.org/x", "spiffe://example.org", "exa mple.org", "example.org:443"} {
		_, err := Parse("test.yaml", []byte("trust_domain: \""+s+"\"\n"))
		if err == nil || !strings.HasPrefix(err.Error(), "test.yaml:1: trust_domain: ") {
			t.Errorf("trust_domain %q: error %v", s, err)
		}
	}
}

// FuzzParse: the loader never panics, every failure is an *Error whose
// problems name the file, and every accepted config validates again.
func FuzzParse(f *testing.F) {
	for _, path := range []string{"../configs/example.yaml", "testdata/full.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"", "trust_domain: example.org\n", "trust_domain: &a x\nlisten: *a\n", "- a\n- b\n",
		"trust_domain: example.org\n---\n", "trust_domain: example.org\nworkloads: [{spiffe_id: spiffe://example.org/a, selectors: [unix:uid:1]}, {spiffe_id: spiffe://example.org/b, selectors: [unix:user:b]}]\n",
		"{trust_domain: example.org, routes: [{name: a, host: a, upstream: 'a:1', server_trust_domain: example.org, protocol: tcp, socket: /a}]}",
		"? [a]\n: b\n", "trust_domain: !!binary aGVsbG8=\n", "<<: {trust_domain: x}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error %T %v is not an *Error with problems", err, err)
			}
			for _, p := range ce.Problems {
				if p.File != "fuzz.yaml" || p.Msg == "" {
					t.Fatalf("problem %+v", p)
				}
			}
			return
		}
		if c.TrustDomain.IsZero() || c.Listen.Mode&0o002 != 0 || c.Identity.SVIDTTL == 0 {
			t.Fatalf("accepted config lacks a required or defaulted value: %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
	})
}
