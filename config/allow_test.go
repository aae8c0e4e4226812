package config

import (
	"testing"

	"github.com/procmesh/procmesh/registry"
)

// I17: workloads[].allow decodes into the registry entry; absent, it
// allows nothing; its keys are checked like any other.
func TestWorkloadAllow(t *testing.T) {
	src := "trust_domain: example.org\nworkloads:\n" +
		"  - spiffe_id: spiffe://example.org/a\n    selectors: [\"unix:uid:1\"]\n" +
		"  - spiffe_id: spiffe://example.org/b\n    selectors: [\"unix:uid:2\"]\n    allow: {traced: true}\n" +
		"  - spiffe_id: spiffe://example.org/c\n    selectors: [\"unix:uid:3\"]\n    allow:\n      traced: false\n      injected_code: true\n"
	c, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []registry.Allow{{}, {Traced: true}, {InjectedCode: true}}
	for i, e := range c.RegistryEntries() {
		if e.Allow != want[i] {
			t.Errorf("workloads[%d] allow %+v, want %+v", i, e.Allow, want[i])
		}
	}

	const head = "trust_domain: example.org\nworkloads:\n  - spiffe_id: spiffe://example.org/a\n    selectors: [\"unix:uid:1\"]\n"
	for _, tc := range []struct{ name, src, want string }{
		{"unknown key", head + "    allow: {ptrace: true}\n",
			`test.yaml:5: unknown key "ptrace" in workloads[0].allow (known: traced, injected_code)`},
		{"quoted bool", head + "    allow: {traced: \"yes\"}\n",
			`test.yaml:5: workloads[0].allow.traced: expected true or false, got string "yes"; write true or false, unquoted`},
		{"not a mapping", head + "    allow: true\n",
			`test.yaml:5: workloads[0].allow: expected a mapping (key: value lines), got boolean true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseErr(t, tc.src); got != tc.want {
				t.Errorf("error\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
