package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// neededCaps are the capabilities procmesh uses (README "Deploying"): the
// systemd unit bounds procmesh to them and the DaemonSet adds them.
var neededCaps = []string{"BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "CHOWN"}

// neededFamilies are the socket families procmesh opens: Unix sockets,
// TCP and UDP (upstreams, inbound, admin). The connect-time record is read
// through getsockname(2), so no netlink.
var neededFamilies = []string{"AF_UNIX", "AF_INET", "AF_INET6"}

// unitValues returns the values of key in the unit file.
func unitValues(t *testing.T, unit, key string) []string {
	t.Helper()
	f, err := os.Open(unit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestSystemdUnitVerifies: systemd-analyze verify accepts the unit without
// a warning (an unknown or misspelt key is a warning, so any output fails),
// with ExecStart pointing at an executable that exists here.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: `make test` installs it (Debian package systemd)")
	}
	unit := filepath.Join("systemd", "procmesh.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nExecStart=/usr/bin/procmesh ") {
		t.Fatal("ExecStart does not run /usr/bin/procmesh")
	}
	copyPath := filepath.Join(t.TempDir(), "procmesh.service")
	if err := os.WriteFile(copyPath, []byte(strings.Replace(string(b), "\nExecStart=/usr/bin/procmesh ", "\nExecStart="+self+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for key, want := range map[string]string{"Type": "notify", "RuntimeDirectory": "procmesh", "StateDirectory": "procmesh",
		"NoNewPrivileges": "yes", "ProtectProc": "default", "ProtectSystem": "strict"} {
		if got := unitValues(t, unit, key); len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v; want %s", key, got, want)
		}
	}
	var caps []string
	for _, c := range strings.Fields(strings.Join(unitValues(t, unit, "CapabilityBoundingSet"), " ")) {
		caps = append(caps, strings.TrimPrefix(c, "CAP_"))
	}
	slices.Sort(caps)
	want := slices.Sorted(slices.Values(neededCaps))
	if !slices.Equal(caps, want) {
		t.Errorf("CapabilityBoundingSet %v; want exactly %v", caps, want)
	}
	fams := slices.Sorted(slices.Values(strings.Fields(strings.Join(unitValues(t, unit, "RestrictAddressFamilies"), " "))))
	if want := slices.Sorted(slices.Values(neededFamilies)); !slices.Equal(fams, want) {
		t.Errorf("RestrictAddressFamilies %v; want exactly %v", fams, want)
	}
}

// TestPrometheusScrapeConfig: promtool accepts the scrape config.
func TestPrometheusScrapeConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: `make test` installs it (Debian package prometheus)")
	}
	out, err := exec.Command(promtool, "check", "config", filepath.Join("prometheus", "scrape.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}
