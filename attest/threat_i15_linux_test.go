//go:build linux

package attest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

// v2Mount returns where the cgroup2 hierarchy is mounted (from mountinfo,
// as procmesh finds it), skipping the test when there is none.
func v2Mount(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	dir := findMount(parseMountinfo(b), "")
	if dir == "" {
		t.Skip("no cgroup2 hierarchy mounted")
	}
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root")
	}
	return dir
}

// cgroupDir makes the cgroup rel (and its missing parents) as root below
// mount, and removes what it made, with all cgroups below, at cleanup.
func cgroupDir(t testing.TB, mount, rel string) string {
	t.Helper()
	dir := mount
	var made []string
	for seg := range strings.SplitSeq(strings.Trim(rel, "/"), "/") {
		dir += "/" + seg
		err := os.Mkdir(dir, 0o755)
		switch {
		case err == nil:
			made = append(made, dir)
		case errors.Is(err, fs.ErrExist):
			// Left by a killed run, or a shared parent (/system.slice).
		default:
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range slices.Backward(made) {
			removeCgroupTree(t, d)
		}
	})
	return dir
}

// removeCgroupTree removes the cgroup dir and every cgroup below it,
// deepest first.
func removeCgroupTree(t testing.TB, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(t, filepath.Join(dir, e.Name()))
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remove cgroup %s: %v", dir, err)
	}
}

// delegate hands the cgroup dir to uid as systemd does for Delegate=yes
// (systemd.resource-control(5)): the directory and the files that let
// its owner make cgroups and move processes between them.
func delegate(t *testing.T, dir string, uid int) {
	t.Helper()
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
		if err := os.Chown(filepath.Join(dir, f), uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				removeCgroupTree(t, filepath.Join(dir, e.Name()))
			}
		}
		for _, f := range []string{"", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"} {
			_ = os.Chown(filepath.Join(dir, f), 0, 0)
		}
	})
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// randUUID returns a random lowercase 8-4-4-4-12 UUID.
func randUUID(t testing.TB) string {
	h := randHex(t, 16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// cgroupSelectors returns the selectors derived from cgroups.
func cgroupSelectors(sels []string) []string {
	return slices.DeleteFunc(slices.Clone(sels), func(s string) bool { return strings.HasPrefix(s, "unix:") })
}

// I15: a user names the cgroups of the subtree delegated to it after a
// runtime's or a system unit's, moves itself there and connects: it gets
// no systemd:id, container:id or k8s:pod-uid. Delegated at the user
// manager (what systemd does for user@UID.service), the names are not at
// an anchored place; delegated at an anchored place (a directory a
// rootless runtime was given), the directories are not root's.
func TestThreat_I15_DelegatedCgroup(t *testing.T) {
	mount := v2Mount(t)
	cid, pod := randHex(t, 32), randUUID(t)
	const userManager = "/user.slice/user-1000.slice/user@1000.service"
	for _, tc := range []struct {
		name      string
		delegated string // the cgroup root hands to uid 1000
		made      string // what uid 1000 makes below it and moves into
		ownerLog  string // "": the layout is not recognised; else the warning names this directory
	}{
		// The unit systemd:id would name is the delegated directory itself.
		{name: "user manager's own cgroup", delegated: userManager, ownerLog: userManager},
		{name: "user manager unit", delegated: userManager, made: "/app.slice/payments.service"},
		{name: "user manager docker scope", delegated: userManager, made: "/app.slice/docker-" + cid + ".scope"},
		{name: "user manager pod", delegated: userManager, made: "/app.slice/pod" + pod},
		{name: "user manager kubepods", delegated: userManager, made: "/kubepods/besteffort/pod" + pod + "/" + cid},
		{name: "user manager kubepods slices", delegated: userManager,
			made: "/kubepods.slice/kubepods-pod" + strings.ReplaceAll(pod, "-", "_") + ".slice/cri-containerd-" + cid + ".scope"},
		{name: "user manager docker", delegated: userManager, made: "/docker/" + cid},
		{name: "delegated service", delegated: "/system.slice/build.service", made: "/payments.service"},
		{name: "delegated kubepods", delegated: "/kubepods", made: "/besteffort/pod" + pod + "/" + cid, ownerLog: "/kubepods"},
		{name: "delegated docker", delegated: "/docker", made: "/" + cid, ownerLog: "/docker"},
		{name: "delegated slice", delegated: "/system.slice/system-tenant.slice", made: "/system-tenant-a.slice/payments.service",
			ownerLog: "/system.slice/system-tenant.slice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := cgroupDir(t, mount, tc.delegated)
			delegate(t, dir, 1000)
			var logs bytes.Buffer
			a := New(Options{Logger: zerolog.New(&logs)})
			c := spawn(t, spawnOpts{
				mode:   "cgroup",
				cred:   &syscall.Credential{Uid: 1000, Gid: 1000},
				cgroup: dir,
				env:    []string{envCgroup + "=" + dir + tc.made},
			})
			if got, want := c.line(), "moved "+tc.delegated+tc.made; got != want {
				t.Fatalf("helper says %q, want %q", got, want)
			}
			_, _, proc := attestChild(t, a, c, true)
			if proc.Cgroup != tc.delegated+tc.made || proc.UID != 1000 {
				t.Fatalf("attested uid %d in %q, want 1000 in %q", proc.UID, proc.Cgroup, tc.delegated+tc.made)
			}
			if got := cgroupSelectors(proc.Selectors); len(got) != 0 || proc.ContainerID != "" || proc.PodUID != "" || proc.SystemdUnit != "" {
				t.Errorf("uid 1000 in its own cgroup %s got %q", proc.Cgroup, got)
			}
			switch {
			case tc.ownerLog == "" && strings.Contains(logs.String(), "selectors dropped"):
				// Outside the anchored layouts nothing is even a candidate:
				// the ownership check must not be what stopped it.
				t.Errorf("%s was read as a runtime layout; log:\n%s", proc.Cgroup, logs.String())
			case tc.ownerLog != "" && !strings.Contains(logs.String(), "cgroup "+mount+tc.ownerLog+" is owned by uid 1000"):
				t.Errorf("no warning naming %s%s; log:\n%s", mount, tc.ownerLog, logs.String())
			}
		})
	}
}

// I15, the other side: processes that root (the system manager, a
// runtime, the kubelet) put in root-owned cgroups of the recognised
// layouts keep their cgroup selectors, whatever uid they run as.
func TestThreat_I15_RootOwnedLayouts(t *testing.T) {
	mount := v2Mount(t)
	cid, pod, unit := randHex(t, 32), randUUID(t), "procmesh-i15-"+randHex(t, 4)+".service"
	podSlice := "kubepods-besteffort-pod" + strings.ReplaceAll(pod, "-", "_") + ".slice"
	for _, tc := range []struct {
		name   string
		cgroup string
		want   []string
	}{
		{name: "system unit", cgroup: "/system.slice/" + unit, want: []string{"systemd:id:" + unit}},
		{name: "templated unit", cgroup: "/system.slice/system-procmesh.slice/procmesh@" + cid[:8] + ".service",
			want: []string{"systemd:id:procmesh@" + cid[:8] + ".service"}},
		{name: "docker systemd", cgroup: "/system.slice/docker-" + cid + ".scope", want: []string{"container:id:" + cid}},
		{name: "docker cgroupfs", cgroup: "/docker/" + cid, want: []string{"container:id:" + cid}},
		{name: "kubepods cgroupfs", cgroup: "/kubepods/besteffort/pod" + pod + "/" + cid,
			want: []string{"container:id:" + cid, "k8s:pod-uid:" + pod}},
		{name: "kubepods systemd", cgroup: "/kubepods.slice/kubepods-besteffort.slice/" + podSlice + "/cri-containerd-" + cid + ".scope",
			want: []string{"container:id:" + cid, "k8s:pod-uid:" + pod}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := cgroupDir(t, mount, tc.cgroup)
			var logs bytes.Buffer
			a := New(Options{Logger: zerolog.New(&logs)})
			c := spawn(t, spawnOpts{cred: &syscall.Credential{Uid: 1000, Gid: 1000}, cgroup: dir})
			_, _, proc := attestChild(t, a, c, true)
			if proc.Cgroup != tc.cgroup {
				t.Fatalf("attested in %q, want %q", proc.Cgroup, tc.cgroup)
			}
			if got := cgroupSelectors(proc.Selectors); !slices.Equal(got, tc.want) {
				t.Errorf("selectors %q, want %q; log:\n%s", got, tc.want, logs.String())
			}
		})
	}
}

// The real walk reports the first directory not owned by root.
func TestCgroupOwners(t *testing.T) {
	mount := v2Mount(t)
	base := "procmesh-owners-" + randHex(t, 4)
	dir := cgroupDir(t, mount, base+"/a/b")
	delegate(t, filepath.Dir(dir), 1000)
	for _, tc := range []struct {
		segs  []string
		depth int
		uid   uint32
		err   string
	}{
		{segs: []string{base}, depth: 2},
		{segs: []string{base, "a"}, depth: 2, uid: 1000},
		{segs: []string{base, "a", "b"}, depth: 2, uid: 1000},
		{segs: []string{base, "missing"}, err: "no such file"},
		{segs: []string{base, "cgroup.procs"}, err: "not a directory"},
	} {
		depth, uid, err := cgroupOwners(mount, tc.segs)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.segs, err, tc.err)
			}
			continue
		}
		if err != nil || depth != tc.depth || uid != tc.uid {
			t.Errorf("%q: depth %d uid %d err %v, want %d %d", tc.segs, depth, uid, err, tc.depth, tc.uid)
		}
	}
	if _, _, err := cgroupOwners(os.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not a cgroup file system") {
		t.Errorf("walk on %s: %v, want not a cgroup file system", os.TempDir(), err)
	}
}
