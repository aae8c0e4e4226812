package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/admin"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/internal/logtest"
)

// TestAdminHelperGet is not a test: re-executed from a copy of the test
// binary (a program no entry registers), it makes one request through the
// socket named by PROCMESH_HELPER_SOCK and exits.
func TestAdminHelperGet(t *testing.T) {
	sock := os.Getenv("PROCMESH_HELPER_SOCK")
	if sock == "" {
		return
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://echo.test/")
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(0)
	}
	io.Copy(io.Discard, resp.Body)
	fmt.Println("helper status", resp.StatusCode)
	os.Exit(0)
}

// unregisteredGet runs one request from a process no entry registers (a
// copy of the test binary at another path) and returns its PID.
func unregisteredGet(t *testing.T, dir, sock string) int {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "unregistered")
	if err := os.WriteFile(other, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(other, "-test.run=^TestAdminHelperGet$")
	cmd.Env = append(os.Environ(), "PROCMESH_HELPER_SOCK="+sock)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "helper status 403") {
		t.Fatalf("unregistered helper: %v\n%s", err, out)
	}
	return cmd.Process.Pid
}

// adminGet fetches an admin path and returns its status and body.
func adminGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue finds one sample's value in an exposition.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no sample %s in the scrape:\n%s", series, body)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAdminListener: a real node with the admin listener on loopback
// serves traffic; its /metrics pass promtool and count what happened
// (requests by route, decision, code and identity; a refused process by
// reason; the cache; the SVID's expiry), /healthz and /readyz answer,
// /status.json lists the identity with its process and pool and the
// refusal, /explain shows a process, a reload moves the generation, and
// pprof is off without its key.
func TestAdminListener(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: `make test` installs it (Debian package prometheus)")
	}
	addr := freeAddr(t)
	e := newReloadEnvWith(t, fmt.Sprintf("admin: {listen: %q, max_identity_labels: 5}\n", addr))
	c := e.client()
	for range 3 {
		if status, err := e.get(c, "http://echo.test/"); err != nil || status != http.StatusOK {
			t.Fatalf("GET echo.test: %d %v", status, err)
		}
	}
	if status, _ := e.get(c, "http://nowhere.test/"); status != http.StatusForbidden {
		t.Fatalf("GET nowhere.test: %d; want 403", status)
	}
	helper := unregisteredGet(t, e.dir, e.sock)

	status, body := adminGet(t, addr, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if v := metricValue(t, body, `procmesh_requests_total{code="200",decision="allow",route="echo",spiffe_id="spiffe://example.org/tests"}`); v != 3 {
		t.Errorf("allowed requests = %v; want 3", v)
	}
	if v := metricValue(t, body, `procmesh_requests_total{code="403",decision="deny",route="none",spiffe_id="spiffe://example.org/tests"}`); v != 1 {
		t.Errorf("requests to no route = %v; want 1", v)
	}
	if v := metricValue(t, body, `procmesh_attestation_refusals_total{reason="no_entry"}`); v != 1 {
		t.Errorf("no_entry refusals = %v; want 1", v)
	}
	if v := metricValue(t, body, `procmesh_process_cache_entries`); v < 2 {
		t.Errorf("cache entries = %v; want the test and the helper", v)
	}
	if v := metricValue(t, body, `procmesh_svid_expiry_seconds{spiffe_id="spiffe://example.org/tests"}`); v <= 0 || v > 3600 {
		t.Errorf("SVID expiry in %v s; want within the 1h TTL", v)
	}
	if v := metricValue(t, body, `procmesh_upstream_pools{route="echo"}`); v != 1 {
		t.Errorf("echo pools = %v; want 1", v)
	}
	if v := metricValue(t, body, `procmesh_upstream_dials_total{route="echo"}`); v < 1 {
		t.Errorf("echo dials = %v; want at least the pool's first connection", v)
	}
	if v := metricValue(t, body, `procmesh_upstream_http1_connections{route="echo",state="idle"}`) + metricValue(t, body, `procmesh_upstream_http1_connections{route="echo",state="busy"}`); v < 1 {
		t.Errorf("echo's http1 connections = %v; want the pool's kept connection", v)
	}
	metricValue(t, body, `procmesh_request_duration_seconds_count{kind="request",route="echo"}`)

	if status, body := adminGet(t, addr, "/healthz"); status != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", status, body)
	}
	if status, body := adminGet(t, addr, "/readyz"); status != 200 || !strings.Contains(body, "ok listeners") || !strings.Contains(body, "ok identity") {
		t.Errorf("/readyz: %d %q", status, body)
	}
	if status, _ := adminGet(t, addr, "/debug/pprof/"); status != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without admin.pprof: %d; want 404", status)
	}

	_, js := adminGet(t, addr, "/status.json")
	var st admin.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, id := range st.Identities {
		if id.ID != "spiffe://example.org/tests" {
			continue
		}
		found = true
		if len(id.Processes) != 1 || id.Processes[0].PID != int32(os.Getpid()) || id.SVIDExpiry == nil ||
			len(id.Pools) != 1 || id.Pools[0].Route != "echo" {
			t.Errorf("identity in status: %+v", id)
		}
	}
	if !found || len(st.Refusals) != 1 || st.Refusals[0].PID != int32(helper) || st.Refusals[0].Kind != "no_entry" ||
		!strings.Contains(st.Refusals[0].Reason, "matches no registration entry") || st.Generation != 1 {
		t.Errorf("status: %s", js)
	}
	_, page := adminGet(t, addr, "/")
	if !strings.Contains(page, fmt.Sprintf(`href="/explain?pid=%d"`, helper)) {
		t.Errorf("status page has no explain link for the refused process:\n%s", page)
	}
	if _, text := adminGet(t, addr, fmt.Sprintf("/explain?pid=%d&format=text", os.Getpid())); !strings.Contains(text, "spiffe://example.org/tests") {
		t.Errorf("explain of the test process:\n%s", text)
	}

	code, out, errOut := run("status", "-admin", addr)
	if code != 0 || !strings.Contains(out, "spiffe://example.org/tests") || !strings.Contains(out, fmt.Sprintf("pid %d ", os.Getpid())) ||
		!strings.Contains(out, "echo (http1)") || !strings.Contains(out, fmt.Sprintf("procmesh explain -pid %d", helper)) {
		t.Errorf("procmesh status: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut = run("status", "-config", e.path); code != 0 || !strings.Contains(out, "spiffe://example.org/tests") {
		t.Errorf("procmesh status -config: %d\n%s%s", code, out, errOut)
	}

	if err := e.rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	e.write(strings.Replace(e.config(true, true), "default: deny", "default: maybe", 1))
	e.rn.reloader.reload("test")
	_, body = adminGet(t, addr, "/metrics")
	if metricValue(t, body, `procmesh_config_reloads_total{result="applied"}`) != 1 ||
		metricValue(t, body, `procmesh_config_reloads_total{result="rejected"}`) != 1 ||
		metricValue(t, body, `procmesh_config_generation`) != 2 {
		t.Errorf("reloads not counted:\n%s", body)
	}
	_, js = adminGet(t, addr, "/status.json")
	st = admin.Status{}
	json.Unmarshal([]byte(js), &st)
	if len(st.Reloads) != 2 || st.Reloads[0].Applied || !st.Reloads[1].Applied || !strings.Contains(st.Reloads[0].Error, "rejected") {
		t.Errorf("reload history: %+v", st.Reloads)
	}
}

// TestAdminUnixSocket: admin.listen as a socket path serves the same
// endpoints on a 0600 socket, `procmesh status -admin PATH` reads it, and
// admin.pprof serves the profiler.
func TestAdminUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	e := newReloadEnvWith(t, fmt.Sprintf("admin: {listen: %s, pprof: true}\n", sock))
	if status, err := e.get(e.client(), "http://echo.test/"); err != nil || status != http.StatusOK {
		t.Fatalf("GET echo.test: %d %v", status, err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode %o; want 0600", fi.Mode().Perm())
	}
	code, out, errOut := run("status", "-admin", sock)
	if code != 0 || !strings.Contains(out, "spiffe://example.org/tests") {
		t.Fatalf("procmesh status -admin %s: %d\n%s%s", sock, code, out, errOut)
	}
	if body := unixGet(t, sock, "/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ with admin.pprof:\n%s", body)
	}
}

// unixGet fetches path from an admin listener on the Unix socket sock and
// returns the body of its 200 answer.
func unixGet(t *testing.T, sock, path string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://admin" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on %s: %d\n%s", path, sock, resp.StatusCode, body)
	}
	return string(body)
}

// TestStatusNotReadyExits3: `procmesh status` prints the status and exits
// 3 naming the failed readiness checks when the node is not ready, so a
// script can tell it from an unreachable node (1). The admin listener here
// serves a not-ready status.json, as a node whose SPIRE agent is down does.
func TestStatusNotReadyExits3(t *testing.T) {
	var ready atomic.Bool
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(admin.Status{Version: "test", TrustDomain: "example.org", Ready: []admin.Check{
			{Name: "listeners", OK: true, Detail: "1 bound"},
			{Name: "identity source", OK: ready.Load(), Detail: "SPIRE agent unreachable"}}})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	code, out, errOut := run("status", "-admin", ln.Addr().String())
	if code != 3 || !strings.Contains(errOut, "not ready: identity source: SPIRE agent unreachable") || !strings.Contains(out, "example.org") {
		t.Fatalf("procmesh status of a node not ready: exit %d\n%s%s", code, out, errOut)
	}
	ready.Store(true)
	if code, out, errOut := run("status", "-admin", ln.Addr().String()); code != 0 {
		t.Fatalf("procmesh status of a ready node: exit %d\n%s%s", code, out, errOut)
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln2.Addr().String()
	ln2.Close()
	if code, _, errOut := run("status", "-admin", gone); code != 1 {
		t.Fatalf("procmesh status of nothing listening: exit %d\n%s", code, errOut)
	}
}

// TestAdminReloadNeedsRestart: a reload that moves the admin listener
// applies the rest of the file, keeps the listener where it is, and logs
// that admin takes effect at the next restart.
func TestAdminReloadNeedsRestart(t *testing.T) {
	addr := freeAddr(t)
	e := newReloadEnvWith(t, fmt.Sprintf("admin: {listen: %q}\n", addr))
	other := freeAddr(t)
	e.extra = fmt.Sprintf("admin: {listen: %q}\n", other)
	e.write(e.config(true, true))
	if err := e.rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.log.String(), `"key":"admin"`) || !strings.Contains(e.log.String(), "takes effect at the next restart") {
		t.Fatalf("no restart note for admin:\n%s", e.log.String())
	}
	if status, _ := adminGet(t, addr, "/healthz"); status != http.StatusOK {
		t.Fatalf("the admin listener moved or stopped: %d", status)
	}
	if _, err := net.DialTimeout("tcp", other, time.Second); err == nil {
		t.Fatal("a reload opened a second admin listener")
	}
}

// TestThreat_F11_WorldConnectableSocket: listen.mode "0666" makes a socket
// every uid can connect to, and procmesh says at start what bounds them.
func TestThreat_F11_WorldConnectableSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "procmesh.yaml")
	cfgText := strings.Replace(configHead(dir), "listen:\n", "listen:\n  mode: \"0666\"\n", 1)
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
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
	defer rn.stop(time.Second)
	fi, err := os.Stat(filepath.Join(dir, "egress.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode %o; want 0666", fi.Mode().Perm())
	}
	if !strings.Contains(log.String(), "listen.mode lets every uid on the node connect") ||
		!strings.Contains(log.String(), `"max_unattested_connections_per_uid":64`) {
		t.Fatalf("no note at start:\n%s", log.String())
	}
}
