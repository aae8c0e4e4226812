//go:build linux

package attest

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadPeer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		usePIDFD bool
		cred     *syscall.Credential
		uid, gid uint32
	}{
		{name: "pidfd", usePIDFD: true},
		{name: "no pidfd", usePIDFD: false},
		{name: "uid 1000", usePIDFD: true, cred: &syscall.Credential{Uid: 1000, Gid: 1000}, uid: 1000, gid: 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := spawn(t, spawnOpts{cred: tc.cred})
			p, err := ReadPeer(c.conn, tc.usePIDFD)
			if err != nil {
				t.Fatalf("ReadPeer: %v", err)
			}
			defer p.Close()
			if p.PID != c.pid() || p.UID != tc.uid || p.GID != tc.gid {
				t.Errorf("peer pid %d uid %d gid %d, want %d %d %d", p.PID, p.UID, p.GID, c.pid(), tc.uid, tc.gid)
			}
			if !tc.usePIDFD {
				if p.PIDFD != -1 {
					t.Errorf("PIDFD = %d without SO_PEERPIDFD, want -1", p.PIDFD)
				}
				return
			}
			if p.PIDFD < 0 {
				t.Fatalf("PIDFD = %d on Linux %s, want a descriptor", p.PIDFD, kernelRelease(t))
			}
			if got := fdinfoPid(t, p.PIDFD); got != strconv.Itoa(int(c.pid())) {
				t.Errorf("pidfd names pid %s, want %d", got, c.pid())
			}
			flags, err := unix.FcntlInt(uintptr(p.PIDFD), unix.F_GETFD, 0)
			if err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("pidfd flags %#x (%v): want close-on-exec", flags, err)
			}
			fd := p.PIDFD
			if err := p.Close(); err != nil || p.PIDFD != -1 {
				t.Fatalf("Close: %v, PIDFD %d", err, p.PIDFD)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
				t.Errorf("pidfd still open after Close: %v", err)
			}
		})
	}
}

// A peer that exited before ReadPeer is refused, by ReadPeer (kernels that
// cannot give a pidfd for an exited peer) or by Fingerprint.
func TestReadPeer_ExitedBeforeRead(t *testing.T) {
	for _, usePIDFD := range []bool{true, false} {
		t.Run("pidfd="+strconv.FormatBool(usePIDFD), func(t *testing.T) {
			c := spawn(t, spawnOpts{})
			c.kill()
			p, err := ReadPeer(c.conn, usePIDFD)
			if err == nil {
				defer p.Close()
				_, err = New(Options{}).Fingerprint(p)
			}
			if !errors.Is(err, ErrPeerGone) {
				t.Fatalf("got %v, want ErrPeerGone", err)
			}
		})
	}
}

func TestPeerPIDFDErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fd     int
		err    error
		wantFD int
		gone   bool
		fail   bool
	}{
		{name: "descriptor", fd: 7, wantFD: 7},
		{name: "old kernel", fd: -1, err: unix.ENOPROTOOPT, wantFD: -1},
		{name: "peer gone EINVAL", fd: -1, err: unix.EINVAL, wantFD: -1, gone: true, fail: true},
		{name: "peer gone ESRCH", fd: -1, err: unix.ESRCH, wantFD: -1, gone: true, fail: true},
		{name: "other error", fd: -1, err: unix.ENODATA, wantFD: -1, fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := peerPIDFD(42, tc.fd, tc.err)
			if fd != tc.wantFD || (err != nil) != tc.fail || errors.Is(err, ErrPeerGone) != tc.gone {
				t.Fatalf("peerPIDFD = %d, %v; want fd %d, fail %v, gone %v", fd, err, tc.wantFD, tc.fail, tc.gone)
			}
			if err != nil && !strings.Contains(err.Error(), "SO_PEERPIDFD") {
				t.Errorf("error %q does not name the syscall", err)
			}
		})
	}
}

func fdinfoPid(t *testing.T, fd int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Pid line in fdinfo of pidfd %d", fd)
	return ""
}

func kernelRelease(t *testing.T) string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Release[:])
}
