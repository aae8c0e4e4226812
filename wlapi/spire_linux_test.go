//go:build linux

package wlapi_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/procmesh/procmesh/internal/spiretest"
)

// With SPIRE as the identity source (a real server and agent), a child
// process gets the X509-SVID and the JWT-SVID SPIRE issued it through
// procmesh's Workload API, verified against the bundles it came with
// (SPIRE's: there is no builtin CA here); a process SPIRE has no entry for
// gets PermissionDenied naming the agent.
func TestThreat_I13_SPIREProvider(t *testing.T) {
	sp := spiretest.Start(t, spiretest.Options{})
	e := newEnv(t, envOptions{spire: sp})
	a, stranger := e.client("a"), e.client("stranger")
	sp.CreateEntry(idA.String(), pathSel(a), "unix:uid:1000")
	sp.WaitEntry(idA.String(), pathSel(a), "unix:uid:1000")
	if r := one(t, e.run(a, 1000, "source")); r.ID != idA.String() {
		t.Fatalf("registered in SPIRE: %+v; want %s", r, idA)
	}
	// Its JWT-SVID, from SPIRE by its PID, validates through procmesh's
	// ValidateJWTSVID and against the JWT bundle of FetchJWTBundles.
	if r := one(t, e.run(a, 1000, "jwt-validate", "PM_AUD=https://sts.example")); r.ID != idA.String() || r.Code != codes.InvalidArgument.String() {
		t.Fatalf("JWT-SVID from SPIRE: %+v", r)
	}
	r := one(t, e.run(stranger, 1000, "fetch"))
	if r.Code != codes.PermissionDenied.String() || !strings.Contains(r.Err, "SPIRE agent") {
		t.Fatalf("not registered in SPIRE: %+v; want PermissionDenied naming the agent", r)
	}
}
