//go:build linux

package attest

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// attest fingerprints and attests c's peer with a.
func attestChild(t *testing.T, a *Attestor, c *child, usePIDFD bool) (*Peer, Fingerprint, *Process) {
	t.Helper()
	p := c.peer(usePIDFD)
	fp, err := a.Fingerprint(p)
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	proc, err := a.Attest(p, fp)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	return p, fp, proc
}

// wantSelectors builds the expected selectors of a process with no
// container, pod or unit (as on this node: check with cgroupOf).
func wantSelectors(uid, gid uint32, groups []uint32, path, sha string) []string {
	want := []string{
		"unix:uid:" + strconv.Itoa(int(uid)),
		"unix:gid:" + strconv.Itoa(int(gid)),
		"unix:path:" + path,
	}
	if sha != "" {
		want = append(want, "unix:sha256:"+sha)
	}
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		want = append(want, "unix:user:"+u.Username)
	}
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		want = append(want, "unix:group:"+g.Name)
	}
	for _, g := range groups {
		want = append(want, "unix:supplementary_gid:"+strconv.Itoa(int(g)))
	}
	slices.Sort(want)
	return slices.Compact(want)
}

// noCgroupIDs fails the test when the node puts the test in a cgroup that
// names a container, pod or unit, which wantSelectors leaves out.
func noCgroupIDs(t *testing.T, proc *Process) {
	t.Helper()
	if proc.ContainerID != "" || proc.PodUID != "" || proc.SystemdUnit != "" {
		t.Fatalf("test node cgroup %q names container %q pod %q unit %q: expected selectors must include them",
			proc.Cgroup, proc.ContainerID, proc.PodUID, proc.SystemdUnit)
	}
}

func TestAttest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		usePIDFD bool
		cred     *syscall.Credential
		has      []string // selectors that must be present
		lacks    []string // selector prefixes that must be absent
	}{
		{name: "root pidfd", usePIDFD: true},
		{name: "root start time", opts: Options{DisablePIDFD: true}, usePIDFD: true},
		{name: "root old kernel", usePIDFD: false},
		{
			name: "uid 1000", usePIDFD: true,
			cred: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{1000, 2000, 3000}},
			has: []string{"unix:uid:1000", "unix:gid:1000", "unix:supplementary_gid:1000",
				"unix:supplementary_gid:2000", "unix:supplementary_gid:3000"},
		},
		{
			name: "unnamed uid", usePIDFD: true,
			cred:  &syscall.Credential{Uid: 54321, Gid: 54322, Groups: []uint32{4000}},
			has:   []string{"unix:uid:54321", "unix:gid:54322", "unix:supplementary_gid:4000"},
			lacks: []string{"unix:user:", "unix:group:"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.lacks != nil {
				if _, err := user.LookupId(strconv.Itoa(int(tc.cred.Uid))); err == nil {
					t.Fatalf("uid %d has an account on this node; pick an unused id", tc.cred.Uid)
				}
			}
			a := New(tc.opts)
			c := spawn(t, spawnOpts{cred: tc.cred})
			p, fp, proc := attestChild(t, a, c, tc.usePIDFD)
			noCgroupIDs(t, proc)

			uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
			if tc.cred != nil {
				uid, gid = tc.cred.Uid, tc.cred.Gid
			}
			groups := statusGroups(t, c.pid())
			if tc.cred != nil && !slices.Equal(groups, tc.cred.Groups) {
				t.Fatalf("child Groups %v, want %v", groups, tc.cred.Groups)
			}
			if proc.Fingerprint != fp || fp.PID != p.PID || fp.UID != uid || fp.GID != gid {
				t.Errorf("fingerprint %+v, want pid %d uid %d gid %d", proc.Fingerprint, p.PID, uid, gid)
			}
			var exe unix.Stat_t
			if err := unix.Stat(bins.a, &exe); err != nil {
				t.Fatal(err)
			}
			if fp.ExeDev != uint64(exe.Dev) || fp.ExeIno != exe.Ino {
				t.Errorf("fingerprint exe %d:%d, want %d:%d", fp.ExeDev, fp.ExeIno, exe.Dev, exe.Ino)
			}
			pidfs := p.PIDFD >= 0 && !tc.opts.DisablePIDFD
			if (fp.PIDFDIno != 0) != pidfs {
				t.Errorf("PIDFDIno %d with pidfd %v", fp.PIDFDIno, pidfs)
			}
			if proc.ExePath != bins.a || proc.ExeDeleted || proc.ExeSHA256 != bins.shaA {
				t.Errorf("exe %q deleted %v sha %q, want %q false %q", proc.ExePath, proc.ExeDeleted, proc.ExeSHA256, bins.a, bins.shaA)
			}
			if !slices.Equal(proc.SupplementaryGIDs, groups) {
				t.Errorf("SupplementaryGIDs %v, want %v", proc.SupplementaryGIDs, groups)
			}
			want := wantSelectors(uid, gid, groups, bins.a, bins.shaA)
			if !slices.Equal(proc.Selectors, want) {
				t.Errorf("selectors\n got %q\nwant %q", proc.Selectors, want)
			}
			for _, sel := range tc.has {
				if !slices.Contains(proc.Selectors, sel) {
					t.Errorf("no selector %q in %q", sel, proc.Selectors)
				}
			}
			for _, prefix := range tc.lacks {
				for _, sel := range proc.Selectors {
					if strings.HasPrefix(sel, prefix) {
						t.Errorf("selector %q for an id without a name (User %q, Group %q)", sel, proc.User, proc.Group)
					}
				}
			}
			if !a.Alive(fp) {
				t.Error("Alive = false for a running peer")
			}
			if fp2, err := a.Fingerprint(p); err != nil || fp2 != fp {
				t.Errorf("second Fingerprint %+v, %v; want %+v", fp2, err, fp)
			}
			c.kill()
			if a.Alive(fp) {
				t.Error("Alive = true after the peer was reaped")
			}
		})
	}
}

// I1: two processes, same uid, same cgroup, different binaries get
// different path and sha256 selectors (and nothing else differs).
func TestThreat_I1_DifferentBinariesSameUID(t *testing.T) {
	a := New(Options{})
	_, _, pa := attestChild(t, a, spawn(t, spawnOpts{exe: bins.a}), true)
	_, _, pb := attestChild(t, a, spawn(t, spawnOpts{exe: bins.b}), true)
	if pa.UID != pb.UID || pa.Cgroup != pb.Cgroup {
		t.Fatalf("peers differ in uid (%d, %d) or cgroup (%q, %q)", pa.UID, pb.UID, pa.Cgroup, pb.Cgroup)
	}
	onlyA := setDiff(pa.Selectors, pb.Selectors)
	onlyB := setDiff(pb.Selectors, pa.Selectors)
	wantA := []string{"unix:path:" + bins.a, "unix:sha256:" + bins.shaA}
	wantB := []string{"unix:path:" + bins.b, "unix:sha256:" + bins.shaB}
	if !slices.Equal(onlyA, wantA) || !slices.Equal(onlyB, wantB) {
		t.Fatalf("selectors only of a %q, only of b %q; want %q and %q", onlyA, onlyB, wantA, wantB)
	}
}

func setDiff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// One Attestor serves many connections at once (run with -race).
func TestAttest_Concurrent(t *testing.T) {
	a := New(Options{HashCacheSize: 1})
	type job struct {
		p    *Peer
		fp   Fingerprint
		path string
	}
	var jobs []job
	for _, exe := range []string{bins.a, bins.b, bins.a, bins.b} {
		c := spawn(t, spawnOpts{exe: exe})
		p := c.peer(true)
		fp, err := a.Fingerprint(p)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{p, fp, exe})
	}
	errs := make(chan error, 4*len(jobs))
	var wg sync.WaitGroup
	for range 4 {
		for _, j := range jobs {
			wg.Go(func() {
				proc, err := a.Attest(j.p, j.fp)
				if err == nil && proc.ExePath != j.path {
					err = fmt.Errorf("pid %d attested as %s, want %s", j.p.PID, proc.ExePath, j.path)
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// A process that drops privileges after connect no longer has the
// credentials SO_PEERCRED recorded: it is refused, not attested as the new
// or the old uid.
func TestFingerprint_CredentialsChangedAfterConnect(t *testing.T) {
	for _, usePIDFD := range []bool{true, false} {
		t.Run("pidfd="+strconv.FormatBool(usePIDFD), func(t *testing.T) {
			a := New(Options{})
			c := spawn(t, spawnOpts{mode: "setuid"})
			p := c.peer(usePIDFD)
			fp, err := a.Fingerprint(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.conn.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
			c.line() // setuid(1000) done
			if _, err := a.Fingerprint(p); !errors.Is(err, ErrPeerGone) {
				t.Errorf("Fingerprint after setuid: %v, want ErrPeerGone", err)
			}
			if proc, err := a.Attest(p, fp); !errors.Is(err, ErrPeerGone) {
				t.Errorf("Attest after setuid: %+v, %v, want ErrPeerGone", proc, err)
			}
			if a.Alive(fp) {
				t.Error("Alive = true after the credentials changed")
			}
		})
	}
}
