//go:build linux

package attest

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// PeerFromPID describes a running process as if it had just connected, for
// `procmesh explain`: a pidfd from pidfd_open (where the kernel has it) and
// the effective uid and gid from /proc/PID/status. It is not a security
// boundary — a socket's SO_PEERCRED is — and the proxy never uses it.
func (a *Attestor) PeerFromPID(pid int32) (*Peer, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("attest: pid %d is not a process id", pid)
	}
	pidfd, err := unix.PidfdOpen(int(pid), 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil, gone(pid, "pidfd_open", err)
	case errors.Is(err, unix.ENOSYS):
		pidfd = -1
	case err != nil:
		return nil, fmt.Errorf("attest: pidfd_open %d: %w", pid, err)
	}
	if !a.usePIDFD && pidfd >= 0 {
		unix.Close(pidfd)
		pidfd = -1
	}
	st, err := a.readStatus(pid)
	if err != nil {
		closePIDFD(pidfd, nil)
		return nil, err
	}
	return &Peer{PID: pid, UID: st.UID[1], GID: st.GID[1], PIDFD: pidfd, readTicks: bootTicks()}, nil
}
