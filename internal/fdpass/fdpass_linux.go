//go:build linux

// Package fdpass is what an attacker on the node does with a Unix socket's
// file descriptor: connect without Go's net package (so the descriptor can
// outlive an exec), hand it to another process over SCM_RIGHTS, take one
// handed over, and wait until a process runs a given binary. The attack
// tests (proxy, wlapi) and `make demo-attack` (cmd/procmesh-demo) share
// it; procmesh itself does not use it.
package fdpass

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Dial connects a Unix stream socket to sock and returns its descriptor;
// without cloexec it survives an exec.
func Dial(sock string, cloexec bool) (int, error) {
	typ := unix.SOCK_STREAM
	if cloexec {
		typ |= unix.SOCK_CLOEXEC
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", sock, err)
	}
	return fd, nil
}

// Send hands fd to the process at the other end of the socket sock
// (SCM_RIGHTS), with one byte of data.
func Send(sock, fd int) error {
	return unix.Sendmsg(sock, []byte{0}, unix.UnixRights(fd), nil, 0)
}

// Receive takes one descriptor handed over on sock.
func Receive(sock int) (int, error) {
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("no descriptor received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, errors.New("no descriptor received")
	}
	return fds[0], nil
}

// WaitExe waits up to 5s until process pid runs bin (same device and
// inode behind /proc/PID/exe).
func WaitExe(pid int, bin string) error {
	var want unix.Stat_t
	if err := unix.Stat(bin, &want); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var st unix.Stat_t
		if unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			return nil
		}
	}
	return fmt.Errorf("process %d never ran %s", pid, bin)
}
