//go:build linux

package spire

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/procmesh/procmesh/attest"
)

// pin is a pidfd for one process, readable once the process exits.
type pin struct {
	f *os.File
}

// pinProcess opens a pidfd for fp.PID and checks it names the process fp
// (its pidfs inode, where the kernel has one; alive is then asked whether
// the process behind the PID is still fp, which a reused PID is not).
func pinProcess(fp attest.Fingerprint, alive func(attest.Fingerprint) bool) (*pin, error) {
	fd, err := unix.PidfdOpen(int(fp.PID), unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("spire: process %d: %w", fp.PID, attest.ErrPeerGone)
	}
	if err != nil {
		return nil, fmt.Errorf("spire: pidfd_open %d: %w (procmesh with the SPIRE provider needs Linux 5.10 or later)", fp.PID, err)
	}
	if fp.PIDFDIno != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Ino != fp.PIDFDIno {
			unix.Close(fd)
			return nil, fmt.Errorf("spire: process %d is not the one attested (PID reused): %w", fp.PID, attest.ErrPeerGone)
		}
	}
	if !alive(fp) {
		unix.Close(fd)
		return nil, fmt.Errorf("spire: process %d exited or changed: %w", fp.PID, attest.ErrPeerGone)
	}
	// A non-blocking pidfd goes into the runtime's poller: waiting for the
	// exit of 1,000 processes costs 1,000 parked goroutines, no threads.
	return &pin{f: os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", fp.PID))}, nil
}

// wait returns when the process exits or the pin is closed.
func (p *pin) wait() {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool { return exited(int(fd)) })
}

// exited reports whether the pidfd is readable: the process has exited.
func exited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// exited reports whether the pinned process has exited.
func (p *pin) exited() bool {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return true
	}
	gone := true
	if err := rc.Control(func(fd uintptr) { gone = exited(int(fd)) }); err != nil {
		return true
	}
	return gone
}

func (p *pin) close() { p.f.Close() }
