package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/workload"
)

// I17: the 403 for a traced process, or one running injected code, says so
// and names the entry that refused it and the allow key that would accept
// it.
func TestRefusalNamesAllowKey(t *testing.T) {
	proc := &attest.Process{
		Fingerprint:  attest.Fingerprint{PID: 42},
		ExePath:      "/usr/local/bin/billing",
		TracerPID:    41,
		Traced:       true,
		InjectedCode: []string{"/tmp/evil.so is mapped executable: outside the system library directories"},
		Selectors:    []string{"unix:path:/usr/local/bin/billing", "unix:uid:1000"},
	}
	entry := registry.Entry{ID: spiffeid.RequireFromString("spiffe://example.org/billing"), Index: 3,
		Selectors: []string{"unix:path:/usr/local/bin/billing", "unix:uid:1000"}}
	status, msg := refusalStatus(&workload.NoMatchError{Process: proc, Refused: []registry.Entry{entry}})
	if status != http.StatusForbidden {
		t.Errorf("status %d", status)
	}
	for _, want := range []string{
		"Also: it is traced by process 41.",
		"Also: it runs injected code: /tmp/evil.so is mapped executable",
		"workloads[3] (spiffe://example.org/billing)",
		"allow.traced: true and allow.injected_code: true",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not say %q", msg, want)
		}
	}
}
