//go:build linux

package attest

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// userHZ is USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux
// architecture Go supports.
const userHZ = 100

// ReadPeer reads SO_PEERCRED and, when usePIDFD is true, SO_PEERPIDFD via
// SyscallConn().Control (never conn.File()). ENOPROTOOPT from SO_PEERPIDFD
// (kernels before 6.5) gives PIDFD -1; EINVAL or ESRCH (the peer already
// exited) gives ErrPeerGone. The caller closes the returned Peer.
func ReadPeer(c *net.UnixConn, usePIDFD bool) (*Peer, error) {
	if c == nil {
		return nil, errors.New("attest: read peer: nil connection")
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("attest: read peer: %w", err)
	}
	var (
		cred              *unix.Ucred
		credErr, pidfdErr error
		pidfd             = -1
	)
	ctrlErr := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil && usePIDFD {
			pidfd, pidfdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		}
	})
	if ctrlErr != nil {
		return nil, fmt.Errorf("attest: read peer: %w", ctrlErr)
	}
	if credErr != nil {
		return nil, fmt.Errorf("attest: getsockopt SO_PEERCRED: %w", credErr)
	}
	if cred.Pid <= 0 {
		// Unconnected socket, or a peer in a PID namespace we cannot see.
		closePIDFD(pidfd, pidfdErr)
		return nil, fmt.Errorf("attest: getsockopt SO_PEERCRED: no peer PID (%d)", cred.Pid)
	}
	p := &Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid, PIDFD: -1, readTicks: bootTicks()}
	if usePIDFD {
		p.PIDFD, err = peerPIDFD(p.PID, pidfd, pidfdErr)
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// peerPIDFD classifies the result of getsockopt SO_PEERPIDFD.
func peerPIDFD(pid int32, fd int, err error) (int, error) {
	switch {
	case err == nil && fd >= 0:
		return fd, nil
	case err == nil:
		return -1, fmt.Errorf("attest: getsockopt SO_PEERPIDFD: invalid descriptor %d", fd)
	case errors.Is(err, unix.ENOPROTOOPT):
		return -1, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ESRCH):
		return -1, gone(pid, "getsockopt SO_PEERPIDFD", err)
	default:
		return -1, fmt.Errorf("attest: getsockopt SO_PEERPIDFD: %w", err)
	}
}

func closePIDFD(fd int, err error) {
	if err == nil && fd >= 0 {
		_ = unix.Close(fd)
	}
}

// Close closes the pidfd. It is idempotent.
func (p *Peer) Close() error {
	if p == nil || p.PIDFD < 0 {
		return nil
	}
	fd := p.PIDFD
	p.PIDFD = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("attest: close pidfd: %w", err)
	}
	return nil
}

// bootTicks returns CLOCK_BOOTTIME in USER_HZ ticks, the clock of the start
// time in /proc/PID/stat, or 0 if the clock cannot be read.
func bootTicks() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano()) / (1e9 / userHZ)
}
