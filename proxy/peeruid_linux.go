//go:build linux

package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerUID reads the uid the kernel recorded for the peer of c at
// connect() (SO_PEERCRED): one getsockopt, no /proc read, so it is known
// at accept, before attestation.
func peerUID(c *net.UnixConn) (uint32, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return 0, false
	}
	return cred.Uid, true
}
