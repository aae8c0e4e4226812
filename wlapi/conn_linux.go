//go:build linux

package wlapi

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/internal/credread"
	"github.com/procmesh/procmesh/internal/pidfd"
)

// peerConn is an accepted connection whose every read is attributed to its
// writer (THREATS I12): bytes another process than the connecting one
// wrote fail the read, and every read after it.
type peerConn struct {
	*net.UnixConn
	raw syscall.RawConn
	pid int32  // SO_PEERCRED: the process that connected
	uid uint32 // its effective uid at connect

	mu      sync.Mutex // one read at a time uses cr
	cr      credread.Reader
	foreign atomic.Pointer[ForeignWriterError]
	// onForeign, when set, is told of the first foreign writer.
	onForeign func(*ForeignWriterError)
}

// newPeerConn reads the connecting process of c.
func newPeerConn(c *net.UnixConn) (*peerConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("wlapi: %w", err)
	}
	pc := &peerConn{UnixConn: c, raw: raw}
	var cerr error
	if err := raw.Control(func(fd uintptr) { pc.pid, pc.uid, cerr = credread.PeerCred(int(fd)) }); err != nil {
		return nil, fmt.Errorf("wlapi: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("wlapi: %w", cerr)
	}
	if pc.pid <= 0 {
		return nil, fmt.Errorf("wlapi: the connecting process is in a PID namespace procmesh cannot see (SO_PEERCRED pid %d)", pc.pid)
	}
	return pc, nil
}

// Read reads what the connecting process wrote. Bytes of another writer
// are dropped and fail this read and every later one with a
// *ForeignWriterError.
func (c *peerConn) Read(p []byte) (int, error) {
	if fw := c.foreign.Load(); fw != nil {
		return 0, fw
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		n    int
		pid  int32
		rerr error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		n, pid, rerr = c.cr.Read(int(fd), p)
		return rerr != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err // closed, deadline
	case rerr != nil:
		return 0, os.NewSyscallError("recvmsg", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	case pid != c.pid:
		fw := &ForeignWriterError{Writer: pid, Connector: c.pid, WriterExe: credread.WriterExe(pid)}
		if c.foreign.CompareAndSwap(nil, fw) && c.onForeign != nil {
			c.onForeign(fw)
		}
		return 0, c.foreign.Load()
	}
	return n, nil
}

// ForeignWriter is the first process other than the connecting one that
// wrote on the connection, nil when there was none.
func (c *peerConn) ForeignWriter() *ForeignWriterError { return c.foreign.Load() }

// pinPeer pins the process that connected c: SO_PEERPIDFD names it with no
// PID race; on kernels without it (before 6.5), pidfd_open of the
// SO_PEERCRED PID, which the caller must check is still the attested
// process (alive) after opening.
func pinPeer(c *net.UnixConn) (*pidfd.Pin, error) {
	peer, err := attest.ReadPeer(c, true)
	if err != nil {
		return nil, fmt.Errorf("wlapi: %w", err)
	}
	fd := peer.PIDFD
	peer.PIDFD = -1 // kept here, not closed with peer
	if fd < 0 {
		fd, err = unix.PidfdOpen(int(peer.PID), unix.PIDFD_NONBLOCK)
		if err != nil {
			return nil, fmt.Errorf("wlapi: pidfd_open %d: %w (the Workload API needs Linux 5.10 or later)", peer.PID, err)
		}
	}
	pin, err := pidfd.New(fd, peer.PID)
	if err != nil {
		return nil, fmt.Errorf("wlapi: %w", err)
	}
	return pin, nil
}

// setPassCred turns on per-write credentials on l, when it is a Unix
// socket listener, so that the connections it accepts carry them.
func setPassCred(l net.Listener) error {
	sc, ok := l.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return nil // not a Unix socket: every connection is refused anyway
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("wlapi: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = credread.SetPassCred(int(fd)) }); err != nil {
		return fmt.Errorf("wlapi: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("wlapi: per-write credentials on %s: %w", l.Addr(), serr)
	}
	return nil
}
