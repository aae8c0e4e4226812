package attest

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParseStat(f *testing.F) {
	for _, s := range []string{
		statLine("42", "sleep", "987654"),
		statLine("42", "a) R 1 2 3 (b", "555"),
		statLine("9", "x\ny) Z", "77"),
		"42 (sleep) S 1 1",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		si, err := parseStat(b)
		if err != nil {
			return
		}
		if si.PID <= 0 || !isLetter(si.State) {
			t.Fatalf("parsed %q to %+v", b, si)
		}
		// Whatever comm holds, a line rebuilt around it parses the same.
		comm := b[bytes.IndexByte(b, '(')+1 : bytes.LastIndexByte(b, ')')]
		again, err := parseStat([]byte(statLine("1", string(comm), "5")))
		if err != nil || again.StartTime != 5 {
			t.Fatalf("comm %q: %+v, %v", comm, again, err)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{
		"Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t10 20 \nTracerPid:\t0\n",
		"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\nTracerPid:\t77\n",
		"Uid:\t0\t0\t0\nGid:\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		si, err := parseStatus(b)
		if err == nil && len(si.Groups) > maxGroups {
			t.Fatalf("%d groups", len(si.Groups))
		}
		if err == nil && si.TracerPID < 0 {
			t.Fatalf("tracer pid %d", si.TracerPID)
		}
	})
}

func FuzzParseCgroup(f *testing.F) {
	for _, s := range []string{
		"0::/\n",
		"9:name=systemd:/\n4:memory:/process_api/x\n0::/\n",
		"0::/system.slice/docker-" + hexA + ".scope\n",
		"0::/system.slice/containerd.service/kubepods-burstable-pod" + strings.ReplaceAll(uid1, "-", "_") + ".slice:cri-containerd:" + hexA + "\n",
		"0::/kubepods/besteffort/pod" + uid1 + "/" + hexA + "\n",
		"0::/../../x.service\n",
		"2:cpu:/docker/" + hexA + "\n0::/docker/" + hexB + "\n",
		"0::/user.slice/user-1000.slice/user@1000.service/app.slice/payments.service\n",
		"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + strings.ReplaceAll(uid1, "-", "_") + ".slice/cri-containerd-" + hexA + ".scope\n",
		"0::/system.slice/system-getty.slice/getty@tty1.service\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ci, err := parseCgroup(b)
		if err != nil {
			return
		}
		if checkCgroupPath(ci.Path) != nil {
			t.Fatalf("accepted path %q", ci.Path)
		}
		if ci.ContainerID != "" && !isHex64(ci.ContainerID) {
			t.Fatalf("container id %q", ci.ContainerID)
		}
		if ci.PodUID != "" && !isUUID(ci.PodUID) {
			t.Fatalf("pod uid %q", ci.PodUID)
		}
		if ci.SystemdUnit != "" && (!isUnitName(ci.SystemdUnit) || !strings.HasSuffix(ci.Path, "/"+ci.SystemdUnit) && !bytes.Contains(b, []byte("/"+ci.SystemdUnit))) {
			t.Fatalf("unit %q from %q", ci.SystemdUnit, b)
		}
		// Every id has a source, a directory of the input whose last
		// segment names it; every source is of an id (I15).
		has := map[idKind]bool{}
		for _, src := range ci.Sources {
			has[src.Kind] = true
			last := src.Dir[strings.LastIndexByte(src.Dir, '/')+1:]
			id := map[idKind]string{kindContainer: ci.ContainerID, kindPod: ci.PodUID, kindUnit: ci.SystemdUnit}[src.Kind]
			if id == "" || !bytes.Contains(b, []byte(":"+src.Dir)) ||
				!strings.Contains(last, id) && !strings.Contains(strings.ReplaceAll(last, "_", "-"), id) {
				t.Fatalf("source %+v for %+v from %q", src, ci, b)
			}
		}
		if has[kindContainer] != (ci.ContainerID != "") || has[kindPod] != (ci.PodUID != "") || has[kindUnit] != (ci.SystemdUnit != "") {
			t.Fatalf("sources %+v for %+v from %q", ci.Sources, ci, b)
		}
		// Whatever the path, below a user manager (a delegated subtree)
		// it names nothing (I15).
		const userManager = "/user.slice/user-1000.slice/user@1000.service"
		if ci.Path != "/" {
			under, err := parseCgroup([]byte("0::" + userManager + ci.Path + "\n"))
			if err != nil || under.ContainerID != "" || under.PodUID != "" || under.SystemdUnit != "" || len(under.Sources) != 0 {
				t.Fatalf("%s%s: %+v, %v", userManager, ci.Path, under, err)
			}
		}
	})
}
