//go:build linux

package attest

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Fingerprint computes the cache key for peer and checks the peer is still
// the process that connected (pidfd liveness, or start time unchanged). The
// process's effective uid and gid (PIDFD_GET_INFO on Linux 6.13+, else
// /proc/PID/status) must still be those SO_PEERCRED recorded at connect; a
// process that changed credentials since is refused with ErrPeerGone.
func (a *Attestor) Fingerprint(p *Peer) (Fingerprint, error) {
	if p == nil || p.PID <= 0 {
		return Fingerprint{}, errors.New("attest: fingerprint: no peer PID")
	}
	pidfd := a.peerPIDFD(p)
	var ino uint64
	if pidfd >= 0 {
		if !p.pidfsRead {
			var err error
			if p.pidfsIno, err = pidfsInode(pidfd); err != nil {
				return Fingerprint{}, err
			}
			p.pidfsRead = true
		}
		ino = p.pidfsIno
	}
	fp, err := a.fingerprint(p.PID, pidfd, ino, p.readTicks)
	if err != nil {
		return Fingerprint{}, err
	}
	if fp.UID != p.UID || fp.GID != p.GID {
		return Fingerprint{}, gone(p.PID, fmt.Sprintf(
			"credentials changed since connect: uid:gid %d:%d -> %d:%d", p.UID, p.GID, fp.UID, fp.GID), nil)
	}
	return fp, nil
}

// Alive reports whether the process behind fp still runs the same image
// (used to drop exited processes from caches).
func (a *Attestor) Alive(fp Fingerprint) bool {
	if fp.PID <= 0 {
		return false
	}
	pidfd := -1
	if fp.PIDFDIno != 0 {
		// pidfd_open names whoever holds the PID now; a reused PID has
		// another pidfs inode, and liveness is then checked on this fd.
		fd, err := unix.PidfdOpen(int(fp.PID), 0)
		if err != nil {
			return false
		}
		defer unix.Close(fd)
		pidfd = fd
	}
	var ino uint64
	if pidfd >= 0 {
		var err error
		if ino, err = pidfsInode(pidfd); err != nil {
			return false
		}
	}
	now, err := a.fingerprint(fp.PID, pidfd, ino, 0)
	return err == nil && now == fp
}

// peerPIDFD returns the pidfd to use for p, -1 for the start-time fallback.
func (a *Attestor) peerPIDFD(p *Peer) int {
	if !a.usePIDFD {
		return -1
	}
	return p.PIDFD
}

// fingerprint reads the identity of the process behind pid. With a pidfd it
// checks, after the /proc reads, that the process still lives (while it
// does, its PID cannot be reused); without one it reads the start time
// before and after and requires it unchanged. pidfsIno is pidfd's
// (pidfsInode). A non-zero notAfter (clock ticks after boot) refuses a
// process that started later: a new owner of a reused PID.
func (a *Attestor) fingerprint(pid int32, pidfd int, pidfsIno, notAfter uint64) (Fingerprint, error) {
	fp := Fingerprint{PID: pid, PIDFDIno: pidfsIno}
	st, err := a.readStat(pid)
	if err != nil {
		return Fingerprint{}, err
	}
	if st.State == 'Z' || st.State == 'X' {
		return Fingerprint{}, gone(pid, fmt.Sprintf("process is a zombie (state %c)", st.State), nil)
	}
	if notAfter != 0 && st.StartTime > notAfter {
		return Fingerprint{}, gone(pid, fmt.Sprintf(
			"PID reused: process started at tick %d, after the connection was read at tick %d", st.StartTime, notAfter), nil)
	}
	fp.StartTime = st.StartTime
	uid, gid, ok, err := pidfdCreds(pid, pidfd)
	if err != nil {
		return Fingerprint{}, err
	}
	if !ok {
		status, err := a.readStatus(pid)
		if err != nil {
			return Fingerprint{}, err
		}
		uid, gid = status.UID[1], status.GID[1]
	}
	fp.UID, fp.GID = uid, gid
	exe, err := a.statExe(pid)
	if err != nil {
		return Fingerprint{}, err
	}
	fp.ExeDev, fp.ExeIno = uint64(exe.Dev), exe.Ino
	if err := a.verify(pid, pidfd, fp.StartTime); err != nil {
		return Fingerprint{}, err
	}
	return fp, nil
}

// verify checks that what was read about pid came from the process that
// started at startTime: by pidfd liveness when pidfd >= 0, else by reading
// the start time again.
func (a *Attestor) verify(pid int32, pidfd int, startTime uint64) error {
	if pidfd >= 0 {
		return pidfdAlive(pid, pidfd)
	}
	st, err := a.readStat(pid)
	if err != nil {
		return err
	}
	if st.StartTime != startTime {
		return gone(pid, fmt.Sprintf("PID reused: start time %d -> %d", startTime, st.StartTime), nil)
	}
	return nil
}

// pidfdAlive sends signal 0 through pidfd: ESRCH means the process exited
// (and its PID may have been reused); EPERM means it lives but we may not
// signal it.
func pidfdAlive(pid int32, pidfd int) error {
	err := unix.PidfdSendSignal(pidfd, 0, nil, 0)
	switch {
	case err == nil, errors.Is(err, unix.EPERM):
		return nil
	case errors.Is(err, unix.ESRCH):
		return gone(pid, "pidfd_send_signal", err)
	default:
		return fmt.Errorf("attest: pid %d: pidfd_send_signal: %w", pid, err)
	}
}

// pidfdCreds returns the effective uid and gid of the process behind pidfd
// through PIDFD_GET_INFO (Linux 6.13+), much cheaper than reading
// /proc/PID/status. ok is false when there is no pidfd or the kernel lacks
// the ioctl.
func pidfdCreds(pid int32, pidfd int) (uid, gid uint32, ok bool, err error) {
	if pidfd < 0 {
		return 0, 0, false, nil
	}
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_CREDS}
	err = unix.IoctlPidfdInfo(pidfd, &info)
	switch {
	case errors.Is(err, unix.ESRCH):
		return 0, 0, false, gone(pid, "ioctl PIDFD_GET_INFO", err)
	case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return 0, 0, false, nil
	case err != nil:
		return 0, 0, false, fmt.Errorf("attest: pid %d: ioctl PIDFD_GET_INFO: %w", pid, err)
	case info.Mask&unix.PIDFD_INFO_CREDS == 0:
		return 0, 0, false, nil
	case info.Mask&unix.PIDFD_INFO_PID != 0 && info.Tgid != uint32(pid):
		return 0, 0, false, gone(pid, fmt.Sprintf("pidfd names pid %d", info.Tgid), nil)
	}
	return info.Euid, info.Egid, true, nil
}

// pidfsInode returns the inode of pidfd when it lives on pidfs (Linux 6.9+),
// where inodes are never reused while the system runs; else 0.
func pidfsInode(pidfd int) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(pidfd, &sfs); err != nil {
		return 0, fmt.Errorf("attest: fstatfs pidfd: %w", err)
	}
	if uint64(sfs.Type) != unix.PID_FS_MAGIC {
		return 0, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(pidfd, &st); err != nil {
		return 0, fmt.Errorf("attest: fstat pidfd: %w", err)
	}
	return st.Ino, nil
}
