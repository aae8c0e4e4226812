//go:build linux

package connrecord

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// sock_diag for AF_UNIX (linux/unix_diag.h); x/sys/unix lacks these.
const (
	udiagShowPeer = 0x4 // UDIAG_SHOW_PEER
	unixDiagPeer  = 2   // UNIX_DIAG_PEER
	unixDiagReq   = 24  // sizeof(struct unix_diag_req)
	unixDiagMsg   = 16  // sizeof(struct unix_diag_msg)
)

// diagConns is a small pool of NETLINK_SOCK_DIAG sockets of one network
// namespace: one request and its answer at a time on each, several
// connections attested at once.
type diagConns struct {
	free   chan *diagConn
	open   func() (int, error) // a new socket in the pool's namespace
	closed atomic.Bool
}

type diagConn struct {
	fd  int
	seq uint32
	buf [512]byte
}

// newDiagConns returns a pool of n sockets opened with open, or in this
// thread's network namespace when open is nil.
func newDiagConns(n int, open func() (int, error)) *diagConns {
	if open == nil {
		open = openDiag
	}
	return &diagConns{free: make(chan *diagConn, n), open: open}
}

func openDiag() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("connrecord: socket NETLINK_SOCK_DIAG: %w", err)
	}
	return fd, nil
}

// peerInode asks the kernel for the inode of the socket at the other end
// of the Unix socket whose inode is ino.
func (d *diagConns) peerInode(ino uint64) (uint64, error) {
	var c *diagConn
	select {
	case c = <-d.free:
	default:
		fd, err := d.open()
		if err != nil {
			return 0, err
		}
		c = &diagConn{fd: fd}
	}
	peer, err := c.peerInode(ino)
	if err != nil {
		// A socket whose exchange failed may hold a stale answer.
		unix.Close(c.fd)
		return 0, err
	}
	select {
	case d.free <- c:
		if d.closed.Load() {
			d.drain() // closed meanwhile: its drain may have missed c
		}
	default:
		unix.Close(c.fd)
	}
	return peer, nil
}

// close closes the pool's sockets, and those in use when they come back.
func (d *diagConns) close() {
	d.closed.Store(true)
	d.drain()
}

func (d *diagConns) drain() {
	for {
		select {
		case c := <-d.free:
			unix.Close(c.fd)
		default:
			return
		}
	}
}

func (c *diagConn) peerInode(ino uint64) (uint64, error) {
	if ino > 0xffffffff {
		return 0, fmt.Errorf("connrecord: socket inode %d does not fit sock_diag's 32 bits", ino)
	}
	c.seq++
	var req [unix.NLMSG_HDRLEN + unixDiagReq]byte
	le := binary.NativeEndian
	le.PutUint32(req[0:], uint32(len(req)))
	le.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST)
	le.PutUint32(req[8:], c.seq)
	r := req[unix.NLMSG_HDRLEN:]
	r[0] = unix.AF_UNIX
	le.PutUint32(r[4:], 0xffffffff) // every state
	le.PutUint32(r[8:], uint32(ino))
	le.PutUint32(r[12:], udiagShowPeer)
	le.PutUint32(r[16:], 0xffffffff) // INET_DIAG_NOCOOKIE
	le.PutUint32(r[20:], 0xffffffff)
	if err := unix.Sendto(c.fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("connrecord: sock_diag request: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf[:], 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("connrecord: sock_diag answer: %w", err)
		}
		peer, done, err := parseDiag(c.buf[:n], c.seq)
		if done || err != nil {
			return peer, err
		}
	}
}

// errNoPeer is the answer for a socket with no peer (it was closed).
var errNoPeer = errors.New("connrecord: the connection has no peer socket any more")

// parseDiag reads one netlink datagram answering request seq. done is
// false for a datagram that answers another request.
func parseDiag(b []byte, seq uint32) (peer uint64, done bool, err error) {
	le := binary.NativeEndian
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(le.Uint32(b[0:]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return 0, true, errors.New("connrecord: sock_diag: malformed answer")
		}
		typ, s := le.Uint16(b[4:]), le.Uint32(b[8:])
		msg := b[unix.NLMSG_HDRLEN:l]
		b = b[nlmsgAlign(l):]
		if s != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return 0, true, errors.New("connrecord: sock_diag: short error")
			}
			errno := -int32(le.Uint32(msg))
			if errno == 0 {
				continue
			}
			return 0, true, fmt.Errorf("connrecord: sock_diag: %w", unix.Errno(errno))
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(msg) < unixDiagMsg {
				return 0, true, errors.New("connrecord: sock_diag: short message")
			}
			attrs := msg[unixDiagMsg:]
			for len(attrs) >= 4 {
				al, at := int(le.Uint16(attrs[0:])), le.Uint16(attrs[2:])
				if al < 4 || al > len(attrs) {
					break
				}
				if at&0x3fff == unixDiagPeer && al >= 8 {
					return uint64(le.Uint32(attrs[4:])), true, nil
				}
				attrs = attrs[min(nlmsgAlign(al), len(attrs)):]
			}
			return 0, true, errNoPeer
		case unix.NLMSG_DONE:
			return 0, true, errNoPeer
		}
	}
	return 0, false, nil
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
