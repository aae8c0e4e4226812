//go:build linux

package credread

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oobSize fits exactly one SCM_CREDENTIALS message: a client that sends
// descriptors (SCM_RIGHTS) gets none installed in procmesh, because no room
// is left for them (the kernel truncates and drops them).
var oobSize = unix.CmsgSpace(unix.SizeofUcred)

// Reader reads with recvmsg(2). A Reader is used by one read at a time
// (its buffers are reused, so a read allocates nothing).
type Reader struct {
	hdr unix.Msghdr
	iov unix.Iovec
	oob [64]byte
}

// SetPassCred turns on SO_PASSCRED on fd. Set it on a listening socket:
// the connections it accepts inherit it, so bytes written before accept
// carry credentials too.
func SetPassCred(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return os.NewSyscallError("setsockopt SO_PASSCRED", err)
	}
	return nil
}

// Read reads once from the non-blocking socket fd into p. pid is the
// process that wrote the bytes read, as the kernel recorded it at write,
// in the reader's PID namespace (0: none attached, or a writer outside
// that namespace). err is a raw errno (EAGAIN included) for the caller's
// poller; n is 0 at end of stream.
//
// The call is raw (no runtime syscall entry), as in package rawio: fd is
// non-blocking, so recvmsg returns at once, and the entry would wake the
// runtime's monitor thread at each request that follows an idle wait.
func (r *Reader) Read(fd int, p []byte) (n int, pid int32, err error) {
	if len(p) == 0 {
		return 0, 0, nil
	}
	r.iov.Base = &p[0]
	r.iov.SetLen(len(p))
	r.hdr.Iov = &r.iov
	r.hdr.Iovlen = 1
	r.hdr.Control = &r.oob[0]
	r.hdr.SetControllen(oobSize)
	r.hdr.Flags = 0
	for {
		m, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.hdr)), unix.MSG_CMSG_CLOEXEC)
		if e == unix.EINTR {
			continue
		}
		r.iov.Base = nil
		if e != 0 {
			return 0, 0, e
		}
		n = int(m)
		break
	}
	return n, r.writer(), nil
}

// writer parses the control messages of the last read.
func (r *Reader) writer() int32 {
	oob := r.oob[:r.hdr.Controllen]
	var pid int32
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_CREDENTIALS && len(data) >= unix.SizeofUcred:
			pid = (*unix.Ucred)(unsafe.Pointer(&data[0])).Pid
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS:
			// Never kept: oobSize leaves no room, but close any anyway.
			for len(data) >= 4 {
				unix.Close(int(*(*int32)(unsafe.Pointer(&data[0]))))
				data = data[4:]
			}
		}
		oob = oob[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(oob)):]
	}
	return pid
}

// PeerCred returns the process that connected the other end of fd and
// its effective uid, as the kernel recorded them at connect()
// (SO_PEERCRED); pid is 0 when the kernel names none.
func PeerCred(fd int) (pid int32, uid uint32, err error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, 0, os.NewSyscallError("getsockopt SO_PEERCRED", err)
	}
	return cred.Pid, cred.Uid, nil
}
