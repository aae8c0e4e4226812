package attest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// I15: which cgroup paths name which ids, and where each was read.
func TestCgroupLayouts(t *testing.T) {
	const um = "/user.slice/user-1000.slice/user@1000.service"
	u_ := strings.ReplaceAll(uid1, "-", "_")
	src := func(k idKind, hier, dir string) cgroupSource { return cgroupSource{Kind: k, Hier: hier, Dir: dir} }
	for _, tc := range []struct {
		name           string
		in             string // a v2 path, or whole /proc/PID/cgroup content when it has a newline
		cid, pod, unit string
		sources        []cgroupSource
	}{
		// Forged in delegated subtrees: nothing.
		{name: "unit in user manager", in: um + "/app.slice/payments.service"},
		{name: "docker scope in user manager", in: um + "/app.slice/docker-" + hexA + ".scope"},
		{name: "pod in user manager", in: um + "/app.slice/pod" + uid1},
		{name: "kubepods in user manager", in: um + "/kubepods/pod" + uid1 + "/" + hexA},
		{name: "kubepods slices in user manager", in: um + "/kubepods.slice/kubepods-pod" + u_ + ".slice/cri-containerd-" + hexA + ".scope"},
		{name: "docker in user manager", in: um + "/docker/" + hexA},
		{name: "below a delegated service", in: "/system.slice/build.service/payments.service"},
		{name: "below a unit's slice-looking child", in: "/system.slice/build.service/system.slice/payments.service"},
		{name: "not a slice chain", in: "/system.slice/getty.slice/payments.service"},
		{name: "top level not a slice", in: "/ci/payments.service"},
		{name: "pod not under kubepods", in: "/ci/pod" + uid1 + "/" + hexA},
		{name: "docker id not at the top", in: "/ci/docker/" + hexA},
		{name: "kubepods unknown qos", in: "/kubepods/guaranteed/pod" + uid1 + "/" + hexA},
		{name: "pod slice at the wrong level", in: "/kubepods.slice/kubepods-besteffort-pod" + u_ + ".slice/crio-" + hexA + ".scope"},
		{name: "colon form not below containerd", in: "/system.slice/crio.service/kubepods-pod" + u_ + ".slice:crio:" + hexA},
		{name: "colon form without a pod slice", in: "/system.slice/containerd.service/x.slice:cri-containerd:" + hexA},
		{name: "user manager itself", in: um, unit: "user@1000.service",
			sources: []cgroupSource{src(kindUnit, "", um)}},
		// Systemd system manager.
		{name: "root unit", in: "/init.scope", unit: "init.scope", sources: []cgroupSource{src(kindUnit, "", "/init.scope")}},
		{name: "template in nested slice", in: "/system.slice/system-getty.slice/getty@tty1.service", unit: "getty@tty1.service",
			sources: []cgroupSource{src(kindUnit, "", "/system.slice/system-getty.slice/getty@tty1.service")}},
		{name: "session scope", in: "/user.slice/user-1000.slice/session-3.scope", unit: "session-3.scope",
			sources: []cgroupSource{src(kindUnit, "", "/user.slice/user-1000.slice/session-3.scope")}},
		{name: "systemd in a container", in: "/system.slice/docker-" + hexA + ".scope/system.slice/payments.service", cid: hexA,
			sources: []cgroupSource{src(kindContainer, "", "/system.slice/docker-"+hexA+".scope")}},
		// Runtimes.
		{name: "docker subgroup", in: "/docker/" + hexA + "/init.scope", cid: hexA,
			sources: []cgroupSource{src(kindContainer, "", "/docker/"+hexA)}},
		{name: "kubepods guaranteed", in: "/kubepods/pod" + uid1, pod: uid1,
			sources: []cgroupSource{src(kindPod, "", "/kubepods/pod"+uid1)}},
		{name: "kubepods crio cgroupfs", in: "/kubepods/burstable/pod" + uid1 + "/crio-" + hexA, cid: hexA, pod: uid1,
			sources: []cgroupSource{src(kindContainer, "", "/kubepods/burstable/pod"+uid1+"/crio-"+hexA),
				src(kindPod, "", "/kubepods/burstable/pod"+uid1)}},
		{name: "kubepods systemd guaranteed", in: "/kubepods.slice/kubepods-pod" + u_ + ".slice/docker-" + hexA + ".scope", cid: hexA, pod: uid1,
			sources: []cgroupSource{src(kindContainer, "", "/kubepods.slice/kubepods-pod"+u_+".slice/docker-"+hexA+".scope"),
				src(kindPod, "", "/kubepods.slice/kubepods-pod"+u_+".slice")}},
		{name: "kubepods systemd besteffort", in: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + u_ + ".slice/cri-containerd-" + hexA + ".scope",
			cid: hexA, pod: uid1,
			sources: []cgroupSource{
				src(kindContainer, "", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+u_+".slice/cri-containerd-"+hexA+".scope"),
				src(kindPod, "", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+u_+".slice")}},
		{name: "containerd colon form", in: "/system.slice/containerd.service/kubepods-burstable-pod" + u_ + ".slice:cri-containerd:" + hexA,
			cid: hexA, pod: uid1,
			sources: []cgroupSource{
				src(kindContainer, "", "/system.slice/containerd.service/kubepods-burstable-pod"+u_+".slice:cri-containerd:"+hexA),
				src(kindPod, "", "/system.slice/containerd.service/kubepods-burstable-pod"+u_+".slice:cri-containerd:"+hexA)}},
		{name: "v1 lines", in: "3:memory:/docker/" + hexA + "\n2:cpu,cpuacct:/docker/" + hexA + "\n1:name=systemd:/system.slice/cron.service\n",
			cid: hexA, unit: "cron.service",
			sources: []cgroupSource{src(kindContainer, "memory", "/docker/"+hexA), src(kindContainer, "cpu,cpuacct", "/docker/"+hexA),
				src(kindUnit, "name=systemd", "/system.slice/cron.service")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if !strings.Contains(in, "\n") {
				in = "0::" + in + "\n"
			}
			got, err := parseCgroup([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if got.ContainerID != tc.cid || got.PodUID != tc.pod || got.SystemdUnit != tc.unit || !reflect.DeepEqual(got.Sources, tc.sources) {
				t.Errorf("parseCgroup(%q)\n got container %q pod %q unit %q sources %+v\nwant container %q pod %q unit %q sources %+v",
					in, got.ContainerID, got.PodUID, got.SystemdUnit, got.Sources, tc.cid, tc.pod, tc.unit, tc.sources)
			}
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	const mi = `23 1 0:21 / / rw,relatime - overlay overlay rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
42 23 0:38 /kubepods /var/lib/kubelet/cg rw - cgroup2 cgroup2 rw
43 23 0:38 / /mnt/my\040cg rw - cgroup2 cgroup2 rw
44 23 0:39 / /short - cgroup2
garbage
`
	got := parseMountinfo([]byte(mi))
	want := []cgroupMount{
		{Opts: []string{"rw", "cpu", "cpuacct"}, Dir: "/sys/fs/cgroup/cpu,cpuacct"},
		{Opts: []string{"rw", "xattr", "name=systemd"}, Dir: "/sys/fs/cgroup/systemd"},
		{V2: true, Dir: "/sys/fs/cgroup/unified"},
		{V2: true, Dir: "/mnt/my cg"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseMountinfo\n got %+v\nwant %+v", got, want)
	}
	for hier, dir := range map[string]string{
		"":             "/sys/fs/cgroup/unified",
		"cpu":          "/sys/fs/cgroup/cpu,cpuacct",
		"cpuacct,cpu":  "/sys/fs/cgroup/cpu,cpuacct",
		"name=systemd": "/sys/fs/cgroup/systemd",
		"memory":       "",
		"cpu,memory":   "",
	} {
		if got := findMount(want, hier); got != dir {
			t.Errorf("findMount(%q) = %q, want %q", hier, got, dir)
		}
	}
}

// fakeCgroupFS is a cgroup tree for dropUntrusted: the owner of each
// directory (mount + path) not owned by root, and how often mountinfo was
// read.
type fakeCgroupFS struct {
	mountinfo string
	owned     map[string]uint32
	fail      map[string]error
	reads     int
}

func (f *fakeCgroupFS) read() ([]byte, error) {
	f.reads++
	return []byte(f.mountinfo), nil
}

func (f *fakeCgroupFS) owners(mount string, segs []string) (int, uint32, error) {
	path := mount
	for i := 0; i <= len(segs); i++ {
		if i > 0 {
			path += "/" + segs[i-1]
		}
		if err := f.fail[path]; err != nil {
			return 0, 0, err
		}
		if uid, ok := f.owned[path]; ok {
			return i, uid, nil
		}
	}
	return len(segs) + 1, 0, nil
}

const hybridMountinfo = `32 31 0:29 / /cg/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /cg/unified rw - cgroup2 cgroup2 rw
`

// I15: ids are dropped when a directory at or above the one they came
// from is not root's, or cannot be checked.
func TestCgroupTrust(t *testing.T) {
	u_ := strings.ReplaceAll(uid1, "-", "_")
	pod := "/kubepods/besteffort/pod" + uid1
	slicePod := "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + u_ + ".slice"
	for _, tc := range []struct {
		name      string
		cgroup    string
		mountinfo string
		owned     map[string]uint32
		fail      map[string]error
		cid, pod  string
		unit      string
		why       []string // substrings of the errors
	}{
		{name: "root owns all", cgroup: "0::" + pod + "/" + hexA + "\n", cid: hexA, pod: uid1},
		{name: "root owns the unit", cgroup: "0::/system.slice/payments.service\n", unit: "payments.service"},
		{name: "delegated kubepods", cgroup: "0::" + pod + "/" + hexA + "\n",
			owned: map[string]uint32{"/cg/unified/kubepods": 1000},
			why:   []string{"cgroup /cg/unified/kubepods is owned by uid 1000", "dropped container:id:" + hexA, "dropped k8s:pod-uid:" + uid1}},
		{name: "delegated container cgroup", cgroup: "0::" + pod + "/" + hexA + "\n", pod: uid1,
			owned: map[string]uint32{"/cg/unified" + pod + "/" + hexA: 1000},
			why:   []string{"dropped container:id:"}},
		{name: "delegated below the container", cgroup: "0::/docker/" + hexA + "/inner\n", cid: hexA,
			owned: map[string]uint32{"/cg/unified/docker/" + hexA + "/inner": 1000}},
		{name: "delegated slice", cgroup: "0::" + slicePod + "/crio-" + hexA + ".scope\n",
			owned: map[string]uint32{"/cg/unified/kubepods.slice/kubepods-besteffort.slice": 1000},
			why:   []string{"dropped container:id:", "dropped k8s:pod-uid:"}},
		{name: "delegated unit", cgroup: "0::/system.slice/payments.service\n",
			owned: map[string]uint32{"/cg/unified/system.slice/payments.service": 1000},
			why:   []string{"dropped systemd:id:payments.service"}},
		{name: "delegated hierarchy root", cgroup: "0::/system.slice/payments.service\n",
			owned: map[string]uint32{"/cg/unified": 1000},
			why:   []string{"cgroup /cg/unified is owned by uid 1000", "dropped systemd:id:"}},
		{name: "one v1 line delegated", cgroup: "4:memory:/docker/" + hexA + "\n0::/docker/" + hexA + "\n",
			owned: map[string]uint32{"/cg/memory/docker": 1000},
			why:   []string{"cgroup /cg/memory/docker is owned by uid 1000", "dropped container:id:"}},
		{name: "v1 hierarchy not mounted", cgroup: "5:pids:/docker/" + hexA + "\n0::/docker/" + hexA + "\n",
			why: []string{`hierarchy "pids" is not mounted`, "dropped container:id:"}},
		{name: "no cgroup2 mount", cgroup: "0::/docker/" + hexA + "\n", mountinfo: "1 0 0:1 / / rw - ext4 /dev/sda rw\n",
			why: []string{"no cgroup2 file system is mounted", "dropped container:id:"}},
		{name: "walk fails", cgroup: "0::/docker/" + hexA + "\n",
			fail: map[string]error{"/cg/unified/docker": errors.New("EACCES")},
			why:  []string{"cannot check who owns it: EACCES", "dropped container:id:"}},
		{name: "no ids, no walk", cgroup: "0::/user.slice/x\n", fail: map[string]error{"/cg/unified": errors.New("walked")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := parseCgroup([]byte(tc.cgroup))
			if err != nil {
				t.Fatal(err)
			}
			mi := tc.mountinfo
			if mi == "" {
				mi = hybridMountinfo
			}
			fs := &fakeCgroupFS{mountinfo: mi, owned: tc.owned, fail: tc.fail}
			var ct cgroupTrust
			errs := ct.dropUntrusted(&info, fs.read, fs.owners)
			if info.ContainerID != tc.cid || info.PodUID != tc.pod || info.SystemdUnit != tc.unit {
				t.Errorf("kept container %q pod %q unit %q, want %q %q %q", info.ContainerID, info.PodUID, info.SystemdUnit, tc.cid, tc.pod, tc.unit)
			}
			joined := fmt.Sprint(errs)
			if len(tc.why) == 0 && len(errs) != 0 {
				t.Errorf("errors %s, want none", joined)
			}
			for _, w := range tc.why {
				if !strings.Contains(joined, w) {
					t.Errorf("errors %s, want %q", joined, w)
				}
			}
		})
	}
}

// The mount table is read once, again for a hierarchy it does not know,
// and again after a failed walk.
func TestCgroupTrustMountCache(t *testing.T) {
	fs := &fakeCgroupFS{mountinfo: hybridMountinfo}
	var ct cgroupTrust
	check := func(cgroup string, wantReads int, wantKept bool) {
		t.Helper()
		info, err := parseCgroup([]byte(cgroup))
		if err != nil {
			t.Fatal(err)
		}
		ct.dropUntrusted(&info, fs.read, fs.owners)
		if fs.reads != wantReads || (info.ContainerID != "") != wantKept {
			t.Fatalf("%q: %d mountinfo reads, kept %q; want %d, %v", cgroup, fs.reads, info.ContainerID, wantReads, wantKept)
		}
	}
	check("0::/docker/"+hexA+"\n", 1, true)
	check("0::/docker/"+hexB+"\n", 1, true)
	check("5:pids:/docker/"+hexA+"\n", 2, false)
	fs.mountinfo += "50 31 0:40 / /cg/pids rw - cgroup cgroup rw,pids\n"
	check("5:pids:/docker/"+hexA+"\n", 3, true)
	fs.fail = map[string]error{"/cg/unified": errors.New("gone")}
	check("0::/docker/"+hexA+"\n", 3, false)
	fs.fail = nil
	check("0::/docker/"+hexA+"\n", 4, true)
}
