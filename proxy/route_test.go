package proxy

import (
	"testing"

	"github.com/procmesh/procmesh/proxy/internal/upstream"
)

// TestNormalHostFoldsASCIIOnly: the Kelvin sign must not fold into "k"
// (P4: a route is reached only by its own name).
func TestNormalHostFoldsASCIIOnly(t *testing.T) {
	for in, want := range map[string]string{
		"Echo.Test:443":  "echo.test",
		"echo.test.":     "echo.test",
		"[::1]:80":       "::1",
		"\u212Aube.test": "\u212Aube.test",
	} {
		if got := upstream.NormalHost(in); got != want {
			t.Errorf("upstream.NormalHost(%q) = %q, want %q", in, got, want)
		}
	}
}
