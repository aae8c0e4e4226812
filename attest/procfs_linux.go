//go:build linux

package attest

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxProcFile bounds what is read from one /proc file; status with the
// largest Groups line (65536 ids) stays well below it.
const maxProcFile = 1 << 20

// procPath returns ProcRoot/PID/name.
func (a *Attestor) procPath(pid int32, name string) string {
	return a.procRoot + "/" + strconv.FormatInt(int64(pid), 10) + "/" + name
}

// isGoneErrno reports whether err is how procfs says the process no longer
// exists: ENOENT on open or readlink, ESRCH on read.
func isGoneErrno(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// readProcFile reads the whole file at path into buf, growing it as needed,
// and returns the filled slice. A vanished process gives ErrPeerGone.
func readProcFile(pid int32, path string, buf []byte) ([]byte, error) {
	fd, err := openRetry(path)
	if err != nil {
		if isGoneErrno(err) {
			return nil, gone(pid, "open "+path, err)
		}
		return nil, fmt.Errorf("attest: open %s: %w", path, err)
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			if len(buf) >= maxProcFile {
				return nil, fmt.Errorf("attest: read %s: larger than %d bytes", path, maxProcFile)
			}
			buf = append(buf, make([]byte, max(len(buf), 512))...)
		}
		m, err := unix.Read(fd, buf[n:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil && isGoneErrno(err):
			return nil, gone(pid, "read "+path, err)
		case err != nil:
			return nil, fmt.Errorf("attest: read %s: %w", path, err)
		case m == 0:
			return buf[:n], nil
		}
		n += m
	}
}

func openRetry(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// readStat reads and parses /proc/PID/stat, checking it names pid.
func (a *Attestor) readStat(pid int32) (statInfo, error) {
	var arr [512]byte
	path := a.procPath(pid, "stat")
	b, err := readProcFile(pid, path, arr[:])
	if err != nil {
		return statInfo{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return statInfo{}, fmt.Errorf("attest: %s: %w", path, err)
	}
	if st.PID != pid {
		return statInfo{}, fmt.Errorf("attest: %s: names pid %d", path, st.PID)
	}
	return st, nil
}

// readStatus reads and parses /proc/PID/status.
func (a *Attestor) readStatus(pid int32) (statusInfo, error) {
	var arr [2048]byte
	path := a.procPath(pid, "status")
	b, err := readProcFile(pid, path, arr[:])
	if err != nil {
		return statusInfo{}, err
	}
	si, err := parseStatus(b)
	if err != nil {
		return statusInfo{}, fmt.Errorf("attest: %s: %w", path, err)
	}
	return si, nil
}

// readCgroup reads and parses /proc/PID/cgroup.
func (a *Attestor) readCgroup(pid int32) (cgroupInfo, error) {
	var arr [1024]byte
	path := a.procPath(pid, "cgroup")
	b, err := readProcFile(pid, path, arr[:])
	if err != nil {
		return cgroupInfo{}, err
	}
	ci, err := parseCgroup(b)
	if err != nil {
		return cgroupInfo{}, fmt.Errorf("attest: %s: %w", path, err)
	}
	return ci, nil
}

// statExe stats the file /proc/PID/exe points to.
func (a *Attestor) statExe(pid int32) (unix.Stat_t, error) {
	var st unix.Stat_t
	path := a.procPath(pid, "exe")
	for {
		err := unix.Stat(path, &st)
		switch {
		case err == nil:
			return st, nil
		case errors.Is(err, unix.EINTR):
			continue
		case isGoneErrno(err):
			return st, gone(pid, "stat "+path, err)
		default:
			return st, fmt.Errorf("attest: stat %s: %w", path, err)
		}
	}
}
