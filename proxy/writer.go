package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/procmesh/procmesh/internal/credread"
	"github.com/procmesh/procmesh/workload"
)

// foreignWriterError refuses bytes written on a client connection by
// another process than the one that connected (THREATS I12): a socket
// passed over SCM_RIGHTS, inherited across fork or taken with
// pidfd_getfd. The connecting process was attested; the writer was not.
type foreignWriterError struct {
	writer, connector int32
	writerExe         string // best effort, for the message
}

// WrittenBy makes it a credread.WriterError.
func (e *foreignWriterError) WrittenBy() (writer, connector int32) { return e.writer, e.connector }

func (e *foreignWriterError) Error() string {
	return fmt.Sprintf("bytes on this connection were written by %s, not by process %d whose connection this is and who was attested; "+
		"each process must connect itself (THREATS I12, attest.foreign_writer)", credread.DescribeWriter(e.writer, e.writerExe), e.connector)
}

// foreignWriter records that pid wrote on the connection, logs it and
// writes the audit line that names the writer, once.
func (c *clientConn) foreignWriter(pid int32) error {
	fw := &foreignWriterError{writer: pid, connector: c.writer.Load(), writerExe: credread.WriterExe(pid)}
	if !c.foreign.CompareAndSwap(nil, fw) {
		return c.foreign.Load()
	}
	c.srv.opts.Audit.Log().Str("event", "connection").Int32("pid", c.peerPID).Int32("writer_pid", pid).
		Str("writer_exe", fw.writerExe).Str("refused", fw.Error()).Str("decision", "deny").Send()
	if o := c.srv.opts.Observer; o != nil {
		o.Observe(Event{Kind: "connection", Decision: "deny", Refusal: fw, PID: c.peerPID})
	}
	return fw
}

// tellForeignWriter ends a tunnel or raw connection whose bytes another
// process wrote with one line saying why, as raw-socket refusals do.
func tellForeignWriter(client net.Conn, err error) {
	var fw *foreignWriterError
	if errors.As(err, &fw) {
		client.SetWriteDeadline(time.Now().Add(refusalDrainTime))
		client.Write([]byte("procmesh: refused: " + fw.Error() + "\n"))
	}
}

// peerCred is the process that connected and its uid, read once at
// accept; ok is false when they cannot be read (pid is then 0, and every
// read fails the writer check, never passes it).
func peerCred(raw syscall.RawConn) (pid int32, uid uint32, ok bool) {
	var err error
	if cerr := raw.Control(func(fd uintptr) { pid, uid, err = credread.PeerCred(int(fd)) }); cerr != nil {
		return 0, 0, false
	}
	return pid, uid, err == nil
}

// passCred turns on per-write credentials on a listener, so that the
// connections it accepts carry them from their first byte.
func passCred(l net.Listener) error {
	var sc syscall.Conn
	switch l := l.(type) {
	case *Socket:
		sc = l.UnixListener
	case *net.UnixListener:
		sc = l
	default:
		return nil // not a Unix socket: its connections are refused anyway
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = credread.SetPassCred(int(fd)) }); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("proxy: per-write credentials on %s: %w", l.Addr(), serr)
	}
	return nil
}

// headWriter returns the writer of the next request head a handler takes
// (the connecting process unless attest.foreign_writer is attest), and
// takes it off the queue when take is set: the fast path peeks, and takes
// only a request it serves itself; net/http takes every HTTP/1.x one.
func (c *clientConn) headWriter(take bool) int32 {
	if !c.srv.opts.AttestForeignWriters {
		return c.peerPID // the only writer a request may have
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heads) == 0 {
		return c.peerPID
	}
	w := c.heads[0]
	if take {
		c.heads = c.heads[1:]
	}
	return w
}

// writerIdentity is the identity a request written by pid acts as: the
// connection's own when the connecting process wrote it, else that of the
// writer, attested by itself (attest.foreign_writer: attest).
func (s *Server) writerIdentity(ctx context.Context, cc *clientConn, pid int32) (*workload.Identity, error) {
	if pid == cc.peerPID {
		return cc.ident.wait(ctx, s.resolver)
	}
	return s.resolver.ResolvePID(ctx, pid)
}
