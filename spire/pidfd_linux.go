//go:build linux

package spire

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/internal/pidfd"
)

// pinProcess opens a pidfd for fp.PID and checks it names the process fp
// (its pidfs inode, where the kernel has one; alive is then asked whether
// the process behind the PID is still fp, which a reused PID is not).
func pinProcess(fp attest.Fingerprint, alive func(attest.Fingerprint) bool) (*pidfd.Pin, error) {
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
	return pidfd.New(fd, fp.PID)
}
