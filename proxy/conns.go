package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/internal/credread"
	"github.com/procmesh/procmesh/internal/rawio"
	"github.com/procmesh/procmesh/proxy/internal/defaults"
	"github.com/procmesh/procmesh/proxy/internal/framing"
)

// clientConn is one accepted client connection. It wraps the Unix
// connection for the life of the connection, under net/http or in a tunnel,
// and does what net/http does not:
//
//   - counts the connection against MaxConnections and, once its identity
//     is known, MaxConnectionsPerIdentity (F9); until then, in its uid's
//     bucket of connections without an identity (F11); the counts are
//     released on Close;
//   - on the main socket, runs an h1Scanner over what the client sends, so
//     that a request net/http would accept but THREATS P1 or P8 refuses
//     reaches the handler as a stand-in that is answered with the reason,
//     and the connection closes after it; the header-read timeout runs
//     from a header's first byte;
//   - once hijacked (WebSocket, CONNECT), counts bytes for the audit line
//     and ends the stream after StreamIdleTimeout without traffic;
//   - after a refusal, half-closes and drains what the client still sends
//     before closing, so the client reads the refusal instead of a reset;
//   - counts HTTP/2 streams reset by the client early, and closes the
//     connection when they dominate (rapid reset, P5).
type clientConn struct {
	*net.UnixConn
	raw syscall.RawConn
	rd  *rawRead
	wr  *rawio.Conn // writes with raw system calls (package rawio)
	srv *Server
	// ident is the connection's attestation, started at accept; it
	// follows the connection when the fast path hands it to net/http.
	ident *connIdentity
	// peerPID is the process that connected (SO_PEERCRED). writer is the
	// process whose bytes are expected: peerPID, or under
	// attest.foreign_writer: attest the writer of the request in progress;
	// bytes of any other are refused, once and for all (foreign). heads
	// are the writers of the request heads the scanner released and no
	// handler took yet (attest mode only; under mu).
	peerPID int32
	writer  atomic.Int32
	foreign atomic.Pointer[foreignWriterError]
	heads   []int32

	// Accounting. overTotal: accepted while MaxConnections were open, so
	// never counted; it is refused at its first request.
	overTotal bool
	admitOnce sync.Once
	admitErr  *limitError
	id        spiffeid.ID // counted against MaxConnectionsPerIdentity when not zero
	// Its uid's bucket of connections without an identity (F11,
	// conns_unattested.go); inBucket: counted there.
	bucket   unattestedBucket
	inBucket atomic.Bool

	// The scanner state, the bytes it released and not yet read, and the
	// read deadlines: the one net/http set and the header-read one.
	mu     sync.Mutex
	scan   *framing.Scanner // nil: raw bytes (raw sockets)
	replay []byte           // scanned bytes the fast path read and handed back
	ready  []byte
	rbuf   *[]byte   // pooled backing of ready, when it has one
	rerr   error     // sticky read error (EOF, broken framing)
	goDL   time.Time // deadline net/http asked for
	headDL time.Time // header-read deadline of the head being read

	hijacked           atomic.Bool
	bytesUp, bytesDown atomic.Int64 // bytes after the hijack
	lastActive         atomic.Int64 // unix nanos of the last byte after the hijack
	idleTimer          *time.Timer
	idleFired          atomic.Bool

	// HTTP/2 streams that ended, and those the client reset early; set
	// once the connection was closed for it.
	streams, resets atomic.Int64
	rapidReset      atomic.Bool

	drain     atomic.Bool // half-close and drain on Close (a refusal was sent)
	tracked   atomic.Bool // registered in Server.conns
	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

type clientConnKey struct{}

func clientConnOf(ctx context.Context) *clientConn {
	c, _ := ctx.Value(clientConnKey{}).(*clientConn)
	return c
}

func (s *Server) newClientConn(uconn *net.UnixConn, scanHTTP bool) *clientConn {
	c := &clientConn{UnixConn: uconn, srv: s}
	c.overTotal = !s.counts.open(s.opts.MaxConnections)
	var uid uint32
	var credOK bool
	if raw, err := uconn.SyscallConn(); err == nil {
		c.raw, c.rd, c.wr = raw, newRawRead(s.scanBufs), rawio.New(uconn, raw)
		c.peerPID, uid, credOK = peerCred(raw)
	}
	c.writer.Store(c.peerPID)
	if !c.overTotal && credOK {
		s.openUnattested(c, uid)
	}
	if scanHTTP {
		c.scan = framing.NewScanner(s.opts.MaxRequestHeaderBytes, s.opts.MaxRequestHeaders, s.overLimit)
		if s.opts.AttestForeignWriters {
			c.scan.Released = func(string) { c.heads = append(c.heads, c.writer.Load()) }
		}
	}
	return c
}

// Read hands net/http, the fast path or a tunnel what the client sent, as
// released by the scanner; bytes the fast path handed back come first.
func (c *clientConn) Read(p []byte) (int, error) {
	if c.scan == nil || c.passing() {
		n, err := c.recv(p)
		c.count(&c.bytesUp, n)
		return n, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if len(c.replay) > 0 {
			n := copy(p, c.replay)
			c.replay = c.replay[n:]
			return n, nil
		}
		if len(c.ready) > 0 {
			n := copy(p, c.ready)
			c.ready = c.ready[n:]
			if len(c.ready) == 0 {
				// Nothing held between reads: an idle keep-alive
				// connection keeps no buffer.
				c.srv.scanBufs.put(c.rbuf)
				c.ready, c.rbuf = nil, nil
			}
			c.count(&c.bytesUp, n)
			return n, nil
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		if c.scan.Done() {
			// Everything after a refused or framing-ending head goes
			// untouched (tunnels) or nowhere (refusals).
			if c.scan.Refused() != nil {
				return 0, io.EOF
			}
			c.mu.Unlock()
			n, err := c.recv(p)
			c.mu.Lock()
			c.count(&c.bytesUp, n)
			return n, err
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// awaitReady waits, holding no buffer, until the client sent something the
// scanner released, or the read failed; the fast path then takes a reader
// from its pool.
func (c *clientConn) awaitReady() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.replay) == 0 && len(c.ready) == 0 && c.rerr == nil && !c.scan.Done() {
		if err := c.fill(); err != nil {
			return err
		}
	}
	return nil
}

// fill reads once from the socket and feeds the scanner. It returns a
// timeout that left nothing to hand over; other errors become sticky
// (rerr). Called with mu held; it is released during the read.
func (c *clientConn) fill() error {
	c.mu.Unlock()
	buf, n, pid, err := c.readPooled()
	c.mu.Lock()
	if n > 0 && pid != c.writer.Load() {
		n = c.otherWriter(pid, n)
	}
	if n > 0 {
		if c.rbuf == nil {
			c.rbuf = c.srv.scanBufs.get()
			c.ready = (*c.rbuf)[:0]
		}
		var ferr error
		c.ready, ferr = c.scan.Feed((*buf)[:n], c.ready)
		if ferr != nil {
			c.rerr = ferr
		}
		c.headDeadline()
	}
	if buf != nil {
		c.srv.scanBufs.put(buf)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if len(c.ready) > 0 {
				return nil // hand over what we have; the deadline still holds
			}
			return err
		}
		if c.rerr == nil {
			c.rerr = err
		}
	}
	return nil
}

// otherWriter decides the bytes read from pid, another process than the
// writer of the request in progress (THREATS I12), and returns how many
// of them to scan: all or none. Between requests, under
// attest.foreign_writer: attest, pid becomes the writer of the next
// request, attested as itself; otherwise its request is answered 403 by
// the one refusal path and the connection closes. Within a request the
// bytes of two writers never mix: the request fails. Called with mu held.
func (c *clientConn) otherWriter(pid int32, n int) int {
	switch {
	case !c.scan.Idle():
		if c.rerr == nil {
			c.rerr = c.foreignWriter(pid)
		}
	case c.srv.opts.AttestForeignWriters:
		c.writer.Store(pid)
		return n
	default:
		fw := c.foreignWriter(pid)
		if c.rbuf == nil {
			c.rbuf = c.srv.scanBufs.get()
			c.ready = (*c.rbuf)[:0]
		}
		c.ready = c.scan.Refuse(c.ready, http.StatusForbidden, fw.Error())
	}
	return 0
}

// rawRead is the state of one readPooled: its callback is made once per
// connection, so a read allocates nothing.
type rawRead struct {
	mu   sync.Mutex // one read at a time uses the fields
	pool *bufferPool
	dst  []byte  // read into dst when set, else into buf from pool
	buf  *[]byte // taken only once the socket is readable
	n    int
	pid  int32 // the writer of the bytes read (SCM_CREDENTIALS)
	err  error
	cr   credread.Reader
	fn   func(fd uintptr) bool
}

func newRawRead(pool *bufferPool) *rawRead {
	rr := &rawRead{pool: pool}
	rr.fn = func(fd uintptr) bool {
		p := rr.dst
		if p == nil {
			rr.buf = rr.pool.get()
			p = *rr.buf
		}
		rr.n, rr.pid, rr.err = rr.cr.Read(int(fd), p)
		if rr.err == syscall.EAGAIN {
			if rr.buf != nil {
				rr.pool.put(rr.buf)
				rr.buf = nil
			}
			return false // wait until readable
		}
		return true
	}
	return rr
}

// readPooled reads once from the socket into a pooled buffer taken only
// once the socket is readable, so a connection waiting for its next
// request holds no buffer (an idle connection costs its goroutine and
// descriptors, not 4 KiB more). The caller returns buf to scanBufs.
func (c *clientConn) readPooled() (buf *[]byte, n int, writer int32, err error) {
	if c.raw == nil {
		return nil, 0, 0, errNoRawConn
	}
	rr := c.rd
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.buf = nil
	n, err = c.readLocked()
	return rr.buf, n, rr.pid, err
}

// recv reads what the client sent into p, refusing bytes another process
// than the writer of the request in progress wrote: on raw sockets the
// connecting process, in a tunnel or h2c the writer of the request that
// opened it (THREATS I12). They are dropped and every later read fails.
func (c *clientConn) recv(p []byte) (int, error) {
	if c.raw == nil {
		return 0, errNoRawConn
	}
	rr := c.rd
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.dst = p
	n, err := c.readLocked()
	rr.dst = nil
	if n > 0 && rr.pid != c.writer.Load() {
		return 0, c.foreignWriter(rr.pid)
	}
	return n, err
}

var errNoRawConn = errors.New("proxy: the client connection has no descriptor to read")

// readLocked reads once, with c.rd held; c.rd.pid is the writer of what
// it read. Once a foreign writer was refused, every read fails.
func (c *clientConn) readLocked() (int, error) {
	if fw := c.foreign.Load(); fw != nil {
		return 0, fw
	}
	rr := c.rd
	rr.n, rr.pid, rr.err = 0, 0, nil
	rerr := c.raw.Read(rr.fn)
	n := rr.n
	switch {
	case rerr != nil:
		return 0, rerr
	case rr.err != nil:
		return 0, &net.OpError{Op: "read", Net: "unix", Err: os.NewSyscallError("recvmsg", rr.err)}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// scanBufSize is the scanner's read buffer (Server.scanBufs, pooled): a
// connection holds one only while a read is in progress or released bytes
// wait to be read.
const scanBufSize = 4 << 10

// framingError is the scanner's verdict on a broken body, if any.
func (c *clientConn) framingError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(c.rerr, framing.ErrFraming) {
		return c.rerr
	}
	return nil
}

// passing reports, without blocking on a Read in progress, that the
// scanner was switched off (hijack) and nothing it released is left.
func (c *clientConn) passing() bool {
	if !c.hijacked.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ready) == 0 && len(c.replay) == 0 && c.rerr == nil
}

// headDeadline starts the header-read timeout at the first byte of a
// request head and lifts it once the head is complete. Called with mu held.
func (c *clientConn) headDeadline() {
	rht := c.srv.opts.ReadHeaderTimeout
	if !defaults.On(rht) {
		return
	}
	switch inHead := c.scan.MidHead(); {
	case inHead && c.headDL.IsZero():
		c.headDL = time.Now().Add(rht)
	case !inHead && !c.headDL.IsZero():
		c.headDL = time.Time{}
	default:
		return
	}
	c.UnixConn.SetReadDeadline(c.readDeadline())
}

// readDeadline is the earlier of net/http's deadline and the header one.
func (c *clientConn) readDeadline() time.Time {
	switch {
	case c.headDL.IsZero():
		return c.goDL
	case c.goDL.IsZero() || c.headDL.Before(c.goDL):
		return c.headDL
	}
	return c.goDL
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.goDL = t
	return c.UnixConn.SetReadDeadline(c.readDeadline())
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.UnixConn.SetWriteDeadline(t)
}

func (c *clientConn) Write(p []byte) (int, error) {
	var n int
	var err error
	if c.wr != nil {
		n, err = c.wr.Write(p)
	} else {
		n, err = c.UnixConn.Write(p)
	}
	c.count(&c.bytesDown, n)
	return n, err
}

// count adds n bytes moved after a hijack, and marks the stream active.
func (c *clientConn) count(total *atomic.Int64, n int) {
	if n > 0 && c.hijacked.Load() {
		total.Add(int64(n))
		c.lastActive.Store(time.Now().UnixNano())
	}
}

// markDrainOnClose marks the connection for a draining close: the client
// was sent a refusal and should be able to read it.
func (c *clientConn) markDrainOnClose() { c.drain.Store(true) }

// Bounds of the drain after a refusal.
const (
	drainTime  = time.Second
	drainBytes = 256 << 10
)

// Close closes the connection once and releases what it counted.
func (c *clientConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed.Store(true)
		id := c.id
		if c.idleTimer != nil {
			c.idleTimer.Stop()
		}
		c.mu.Unlock()
		if c.drain.Load() {
			c.UnixConn.CloseWrite()
			c.UnixConn.SetReadDeadline(time.Now().Add(drainTime))
			io.Copy(io.Discard, io.LimitReader(c.UnixConn, drainBytes))
		}
		c.closeErr = c.UnixConn.Close()
		if !c.overTotal {
			c.srv.counts.close(id)
			c.leaveUnattested()
		}
		if c.tracked.Load() {
			c.srv.conns.remove(c)
		}
	})
	return c.closeErr
}
