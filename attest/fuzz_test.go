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
	})
}
