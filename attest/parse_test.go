package attest

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	hexA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hexB = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	uid1 = "2c48913c-b29f-438a-b2f8-6a3f7de35da4"
	uid2 = "11111111-2222-3333-4444-555555555555"
)

// statLine builds a /proc/PID/stat line with comm and start time.
func statLine(pid, comm, start string) string {
	return pid + " (" + comm + ") S 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 " + start +
		" 1234567 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
}

// I10: malformed /proc content is parsed or refused, never a panic.
func TestThreat_I10_MalformedProc(t *testing.T) {
	t.Run("cgroup", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			in   string
			want cgroupInfo
			err  string // substring of the error; "" = parses
		}{
			{name: "v2 root", in: "0::/\n", want: cgroupInfo{Path: "/"}},
			{name: "hybrid v1+v2", in: "9:name=systemd:/\n4:memory:/process_api/x\n0::/\n", want: cgroupInfo{Path: "/"}},
			{name: "v1 only", in: "2:cpu,cpuacct:/a\n1:name=systemd:/system.slice/cron.service\n",
				want: cgroupInfo{Path: "/a", SystemdUnit: "cron.service"}},
			{name: "systemd service", in: "0::/system.slice/billing.service\n",
				want: cgroupInfo{Path: "/system.slice/billing.service", SystemdUnit: "billing.service"}},
			{name: "systemd scope", in: "0::/user.slice/user-1000.slice/session-3.scope\n",
				want: cgroupInfo{Path: "/user.slice/user-1000.slice/session-3.scope", SystemdUnit: "session-3.scope"}},
			{name: "service subgroup is not the unit", in: "0::/system.slice/foo.service/worker\n",
				want: cgroupInfo{Path: "/system.slice/foo.service/worker"}},
			{name: "docker cgroupfs", in: "0::/docker/" + hexA + "\n",
				want: cgroupInfo{Path: "/docker/" + hexA, ContainerID: hexA}},
			{name: "docker scope", in: "0::/system.slice/docker-" + hexA + ".scope\n",
				want: cgroupInfo{Path: "/system.slice/docker-" + hexA + ".scope", ContainerID: hexA}},
			{name: "cri-containerd scope in pod", in: "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
				strings.ReplaceAll(uid1, "-", "_") + ".slice/cri-containerd-" + hexA + ".scope\n",
				want: cgroupInfo{Path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
					strings.ReplaceAll(uid1, "-", "_") + ".slice/cri-containerd-" + hexA + ".scope", ContainerID: hexA, PodUID: uid1}},
			{name: "crio scope", in: "0::/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uid1, "-", "_") + ".slice/crio-" + hexA + ".scope\n",
				want: cgroupInfo{Path: "/kubepods.slice/kubepods-pod" + strings.ReplaceAll(uid1, "-", "_") + ".slice/crio-" + hexA + ".scope",
					ContainerID: hexA, PodUID: uid1}},
			{name: "crio conmon is not a container", in: "0::/machine.slice/crio-conmon-" + hexA + ".scope\n",
				want: cgroupInfo{Path: "/machine.slice/crio-conmon-" + hexA + ".scope", SystemdUnit: "crio-conmon-" + hexA + ".scope"}},
			{name: "containerd colon ids", in: "0::/system.slice/containerd.service/kubepods-burstable-pod" +
				strings.ReplaceAll(uid1, "-", "_") + ".slice:cri-containerd:" + hexA + "\n",
				want: cgroupInfo{Path: "/system.slice/containerd.service/kubepods-burstable-pod" +
					strings.ReplaceAll(uid1, "-", "_") + ".slice:cri-containerd:" + hexA, ContainerID: hexA, PodUID: uid1}},
			{name: "kubepods cgroupfs", in: "0::/kubepods/besteffort/pod" + uid1 + "/" + hexA + "\n",
				want: cgroupInfo{Path: "/kubepods/besteffort/pod" + uid1 + "/" + hexA, ContainerID: hexA, PodUID: uid1}},
			{name: "same id on every v1 line", in: "3:memory:/docker/" + hexA + "\n2:cpu:/docker/" + hexA + "\n",
				want: cgroupInfo{Path: "/docker/" + hexA, ContainerID: hexA}},
			{name: "bare hex not under docker or pod", in: "0::/ci/" + hexA + "\n", want: cgroupInfo{Path: "/ci/" + hexA}},
			{name: "uppercase id ignored", in: "0::/docker/" + strings.ToUpper(hexA) + "\n",
				want: cgroupInfo{Path: "/docker/" + strings.ToUpper(hexA)}},
			{name: "unit name with bad characters", in: "0::/system.slice/a b.service\n",
				want: cgroupInfo{Path: "/system.slice/a b.service"}},
			// Docker in docker: the inner id is not at an anchored place (I15).
			{name: "nested docker is the outer container", in: "0::/docker/" + hexA + "/docker/" + hexB + "\n",
				want: cgroupInfo{Path: "/docker/" + hexA + "/docker/" + hexB, ContainerID: hexA}},
			{name: "two container ids across lines", in: "2:cpu:/docker/" + hexA + "\n0::/docker/" + hexB + "\n", err: "two container ids"},
			{name: "two pod uids", in: "2:cpu:/kubepods/pod" + uid1 + "\n0::/kubepods/pod" + uid2 + "\n", err: "two pod ids"},
			{name: "dot dot", in: "0::/../../system.slice/x.service\n", err: `".." path segment`},
			{name: "dot dot inside", in: "0::/a/../b\n", err: `".." path segment`},
			{name: "dot", in: "0::/a/./b\n", err: `"." path segment`},
			{name: "empty segment", in: "0::/a//b\n", err: "empty path segment"},
			{name: "trailing slash", in: "0::/a/\n", err: "empty path segment"},
			{name: "relative", in: "0::a\n", err: "not absolute"},
			{name: "deleted cgroup", in: "0::/system.slice/x.service (deleted)\n", err: "deleted"},
			{name: "two v2 lines", in: "0::/\n0::/a\n", err: "second v2 line"},
			{name: "v2 id with controllers", in: "0:cpu:/\n", err: "disagree"},
			{name: "v1 without controllers", in: "3::/\n", err: "disagree"},
			{name: "bad hierarchy", in: "x::/\n", err: "bad hierarchy"},
			{name: "negative hierarchy", in: "-1::/\n", err: "bad hierarchy"},
			{name: "garbage", in: "\x00\xff garbage", err: "want hierarchy:controllers:path"},
			{name: "one colon", in: "0:/\n", err: "want hierarchy:controllers:path"},
			{name: "empty", in: "", err: "no cgroup lines"},
			{name: "only newlines", in: "\n\n", err: "no cgroup lines"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := parseCgroup([]byte(tc.in))
				checkParse(t, err, tc.err, errCgroupFormat)
				got.Sources = nil // TestCgroupLayouts checks them
				if tc.err == "" && !reflect.DeepEqual(got, tc.want) {
					t.Errorf("parseCgroup\n got %+v\nwant %+v", got, tc.want)
				}
			})
		}
	})
	t.Run("stat", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			in   string
			want statInfo
			err  string
		}{
			{name: "plain", in: statLine("42", "sleep", "987654"), want: statInfo{PID: 42, State: 'S', StartTime: 987654}},
			{name: "paren and spaces in comm", in: statLine("42", "a) R 1 2 3 (b", "555"), want: statInfo{PID: 42, State: 'S', StartTime: 555}},
			{name: "comm looks like fields", in: statLine("7", ") S 1 1 1 0 -1 4 1 0 0 0 1 2 0 0 20 0 1 0 999 ", "12"), want: statInfo{PID: 7, State: 'S', StartTime: 12}},
			{name: "newline in comm", in: statLine("9", "x\ny) Z", "77"), want: statInfo{PID: 9, State: 'S', StartTime: 77}},
			{name: "empty comm", in: statLine("9", "", "77"), want: statInfo{PID: 9, State: 'S', StartTime: 77}},
			{name: "max start time", in: statLine("9", "x", "18446744073709551615"), want: statInfo{PID: 9, State: 'S', StartTime: 1<<64 - 1}},
			{name: "no trailing fields", in: "9 (x) S 1 1 1 0 -1 4 1 0 0 0 1 2 0 0 20 0 1 0 5", want: statInfo{PID: 9, State: 'S', StartTime: 5}},
			{name: "truncated", in: "42 (sleep) S 1 1 1 0 -1 4194560 100 0", err: "truncated"},
			{name: "truncated after comm", in: "42 (sleep)", err: "truncated"},
			{name: "start time overflows", in: statLine("9", "x", "18446744073709551616"), err: "start time"},
			{name: "start time not a number", in: statLine("9", "x", "12a"), err: "start time"},
			{name: "double space", in: strings.Replace(statLine("9", "x", "1"), "S 1", "S  1", 1), err: "empty field"},
			{name: "bad state", in: strings.Replace(statLine("9", "x", "1"), ") S", ") 1", 1), err: "state"},
			{name: "no parens", in: "42 sleep S 1", err: "no (comm)"},
			{name: "close before open", in: "42 )x( S 1", err: "no (comm)"},
			{name: "no pid", in: "(x) S 1", err: "no (comm)"},
			{name: "bad pid", in: statLine("4x", "x", "1"), err: "pid"},
			{name: "pid zero", in: statLine("0", "x", "1"), err: "pid"},
			{name: "pid overflow", in: statLine("2147483648", "x", "1"), err: "pid"},
			{name: "empty", in: "", err: "no (comm)"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := parseStat([]byte(tc.in))
				checkParse(t, err, tc.err, errStatFormat)
				if tc.err == "" && got != tc.want {
					t.Errorf("parseStat = %+v, want %+v", got, tc.want)
				}
			})
		}
	})
	t.Run("status", func(t *testing.T) {
		const ok = "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t10 20 \nTracerPid:\t0\nNSpid:\t1\n"
		for _, tc := range []struct {
			name string
			in   string
			want statusInfo
			err  string
		}{
			{name: "plain", in: ok, want: statusInfo{UID: [4]uint32{1, 2, 3, 4}, GID: [4]uint32{5, 6, 7, 8}, Groups: []uint32{10, 20}}},
			{name: "no groups", in: "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\nTracerPid:\t0\n", want: statusInfo{}},
			{name: "max ids", in: "Uid:\t4294967295\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t4294967295\nTracerPid:\t2147483647\n",
				want: statusInfo{UID: [4]uint32{1<<32 - 1}, Groups: []uint32{1<<32 - 1}, TracerPID: 1<<31 - 1}},
			{name: "traced", in: strings.Replace(ok, "TracerPid:\t0", "TracerPid:\t4242", 1),
				want: statusInfo{UID: [4]uint32{1, 2, 3, 4}, GID: [4]uint32{5, 6, 7, 8}, Groups: []uint32{10, 20}, TracerPID: 4242}},
			{name: "no final newline", in: "Uid:\t0\t1\t0\t0\nGid:\t0\t2\t0\t0\nTracerPid:\t0\nGroups:\t3", want: statusInfo{UID: [4]uint32{0, 1}, GID: [4]uint32{0, 2}, Groups: []uint32{3}}},
			{name: "missing uid", in: "Gid:\t0\t0\t0\t0\nGroups:\nTracerPid:\t0\n", err: "no Uid"},
			{name: "missing gid", in: "Uid:\t0\t0\t0\t0\nGroups:\nTracerPid:\t0\n", err: "no Gid"},
			{name: "missing groups", in: "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nTracerPid:\t0\n", err: "no Groups"},
			{name: "missing tracer", in: "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\n", err: "no TracerPid"},
			{name: "two tracer lines", in: ok + "TracerPid:\t7\n", err: "two TracerPid"},
			{name: "tracer overflow", in: strings.Replace(ok, "TracerPid:\t0", "TracerPid:\t2147483648", 1), err: "bad PID"},
			{name: "two tracers", in: strings.Replace(ok, "TracerPid:\t0", "TracerPid:\t1 2", 1), err: "more than one PID"},
			{name: "empty tracer", in: strings.Replace(ok, "TracerPid:\t0", "TracerPid:\t", 1), err: "no PID"},
			{name: "two uid lines", in: ok + "Uid:\t0\t0\t0\t0\n", err: "two Uid"},
			{name: "three uids", in: strings.Replace(ok, "Uid:\t1\t2\t3\t4", "Uid:\t1\t2\t3", 1), err: "3 ids"},
			{name: "five gids", in: strings.Replace(ok, "Gid:\t5\t6\t7\t8", "Gid:\t5\t6\t7\t8\t9", 1), err: "more than 4"},
			{name: "uid overflow", in: strings.Replace(ok, "Uid:\t1", "Uid:\t4294967296", 1), err: "bad id"},
			{name: "negative uid", in: strings.Replace(ok, "Uid:\t1", "Uid:\t-1", 1), err: "bad id"},
			{name: "bad group", in: strings.Replace(ok, "10 20", "10 x", 1), err: "bad id"},
			{name: "garbage", in: "\x00\x01\xff", err: "no Uid"},
			{name: "empty", in: "", err: "no Uid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := parseStatus([]byte(tc.in))
				checkParse(t, err, tc.err, errStatusFormat)
				if tc.err == "" && (got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.Groups, tc.want.Groups) || got.TracerPID != tc.want.TracerPID) {
					t.Errorf("parseStatus = %+v, want %+v", got, tc.want)
				}
			})
		}
	})
}

func checkParse(t *testing.T, err error, want string, sentinel error) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("parsed, want error containing %q", want)
	case want != "" && (!strings.Contains(err.Error(), want) || !errors.Is(err, sentinel)):
		t.Fatalf("error %q, want %q wrapping %v", err, want, sentinel)
	}
}

func TestSelectors(t *testing.T) {
	p := &Process{
		Fingerprint:       Fingerprint{UID: 1000, GID: 100},
		SupplementaryGIDs: []uint32{100, 27, 27},
		User:              "bob",
		ExePath:           "/usr/bin/billing",
		ExeSHA256:         hexA,
		ContainerID:       hexB,
		PodUID:            uid1,
		SystemdUnit:       "billing.service",
	}
	want := []string{
		"container:id:" + hexB,
		"k8s:pod-uid:" + uid1,
		"systemd:id:billing.service",
		"unix:gid:100",
		"unix:path:/usr/bin/billing",
		"unix:sha256:" + hexA,
		"unix:supplementary_gid:100",
		"unix:supplementary_gid:27",
		"unix:uid:1000",
		"unix:user:bob",
	}
	if got := selectors(p); !slices.Equal(got, want) {
		t.Fatalf("selectors\n got %q\nwant %q", got, want)
	}
}
