package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/internal/logtest"
)

// TestRunServesWorkloadAPI starts procmesh from a file with
// listen.workload_api: the test process, registered by path, gets its SVID
// from go-spiffe's X509Source; a reload that moves the socket is kept for
// the next restart; stopping procmesh ends the source's stream, and the
// audit line says so.
func TestRunServesWorkloadAPI(t *testing.T) {
	dir, err := os.MkdirTemp("", "pm-wl-") // socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	self, _ := os.Executable()
	path := filepath.Join(dir, "procmesh.yaml")
	admin := freeAddr(t)
	entry := "unix:path:" + self
	text := func(sock, ids string) string {
		return fmt.Sprintf(`trust_domain: example.org
listen: {socket: %s/egress.sock, workload_api: %s, workload_api_ids: [%s]}
identity: {state_dir: %s/state}
reload: {watch: false}
admin: {listen: %q}
workloads:
  - {spiffe_id: spiffe://example.org/tests, selectors: [%q]}
`, dir, sock, ids, dir, admin, entry)
	}
	sock := filepath.Join(dir, "workload.sock")
	if err := os.WriteFile(path, []byte(text(sock, "spiffe://example.org/tests")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := &logtest.Buffer{}
	rn, err := start(path, cfg, zerolog.New(log))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			rn.stop(5 * time.Second)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+sock)))
	if err != nil {
		t.Fatalf("X509Source: %v\n%s", err, log.String())
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil || svid.ID.String() != "spiffe://example.org/tests" {
		t.Fatalf("SVID %v, %v", svid, err)
	}

	// listen.workload_api_ids is applied at once: a reload that no longer
	// lists the identity refuses its next RPC, and is not reported as a
	// restart-only change.
	if err := os.WriteFile(path, []byte(text(sock, "spiffe://example.org/others/*")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	if n := len(log.Lines(`"key":"listen"`, "next restart")); n != 0 {
		t.Fatalf("a changed listen.workload_api_ids is reported as restart-only:\n%s", log.String())
	}
	if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+sock)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after a reload that no longer lists the identity, FetchX509SVID: %v; want PermissionDenied", err)
	}

	// The metrics count the RPCs that ended by outcome (the source's
	// stream is still open), and a caller with no identity (THREATS I13)
	// as an attestation refusal with its reason.
	entry = "unix:uid:4242"
	if err := os.WriteFile(path, []byte(text(sock, "spiffe://example.org/tests")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	if _, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+sock)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("with no entry for the process, FetchX509SVID: %v; want PermissionDenied", err)
	}
	_, body := adminGet(t, admin, "/metrics")
	for series, least := range map[string]float64{
		`procmesh_workload_api_rpcs_total{outcome="PermissionDenied",rpc="FetchX509SVID"}`: 2,
		`procmesh_attestation_refusals_total{reason="no_entry"}`:                           1,
	} {
		if v := metricValue(t, body, series); v < least {
			t.Errorf("%s = %v; want at least %v", series, v, least)
		}
	}
	entry = "unix:path:" + self

	if err := os.WriteFile(path, []byte(text(filepath.Join(dir, "other.sock"), "spiffe://example.org/others/*")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	if len(log.Lines(`"key":"listen"`, "next restart")) != 1 {
		t.Fatalf("a changed listen.workload_api is not reported as restart-only:\n%s", log.String())
	}

	rn.stop(5 * time.Second)
	stopped = true
	if len(log.Lines(`"rpc":"FetchX509SVID"`, `"outcome":"Unavailable"`, "shutting down")) == 0 {
		t.Fatalf("no audit line for the stream ended by the shutdown:\n%s", log.String())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("the Workload API socket is left after stop: %v", err)
	}
}
