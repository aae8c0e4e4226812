package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httputil"
	"sync"
)

// TunnelConn is the upstream mTLS connection of a CONNECT tunnel or a raw
// socket. Its Write sends all the TLS records one call produces in one
// write(2).
//
// crypto/tls seals a Write into records of at most 16 KiB and writes each
// with a call of its own: a 32 KiB copy buffer cost two sendmsg calls (and
// many more during a connection's first 128 KiB, which Go sends in
// MSS-sized records). On a bulk transfer those calls and the TCP segments
// they make were half of procmesh's CPU time. A recordBatcher under the
// tls.Conn collects the records of one Write in a pooled buffer, held only
// for that Write, and sends them together.
type TunnelConn struct {
	*tls.Conn
	raw  *recordBatcher
	bufs httputil.BufferPool
}

// DialTunnel dials the pool's route over mTLS for a tunnel or raw socket,
// like DialTLS, with the records of each Write batched.
func (p *Pool) DialTunnel(ctx context.Context, bufs httputil.BufferPool) (*TunnelConn, error) {
	var b *recordBatcher
	c, err := p.dialTLSWith(ctx, p.tls, func(raw net.Conn) net.Conn {
		b = &recordBatcher{Conn: raw}
		return b
	})
	if err != nil {
		return nil, err
	}
	return &TunnelConn{Conn: c, raw: b, bufs: bufs}, nil
}

// Write seals p and sends its records in as few writes as the batch
// buffer allows: one, when p is at most maxSealedPlaintext of it.
func (c *TunnelConn) Write(p []byte) (int, error) {
	buf := c.bufs.Get()
	c.raw.begin(buf)
	n, err := c.Conn.Write(p)
	if ferr := c.raw.end(); err == nil {
		err = ferr
	}
	c.bufs.Put(buf)
	return n, err
}

// ReadLimit is how much of a copy buffer of size bytes to fill before a
// Write, so that its records fit one batch buffer of the same size.
func (c *TunnelConn) ReadLimit(size int) int { return maxSealedPlaintext(size) }

// TLS 1.3 adds to each record a 5-byte header, the inner content type and
// a 16-byte AEAD tag; records carry at most 16 KiB of plaintext.
const (
	tlsRecordOverhead = 5 + 1 + 16
	tlsMaxPlaintext   = 16 << 10
)

// maxSealedPlaintext is the most plaintext whose full-size TLS 1.3 records
// fit in size bytes.
func maxSealedPlaintext(size int) int {
	records := (size + tlsMaxPlaintext - 1) / tlsMaxPlaintext
	return size - records*tlsRecordOverhead
}

// recordBatcher is the TCP connection under a tunnel's tls.Conn. Between
// begin and end it collects what crypto/tls writes (records, in order) and
// sends it when the buffer is full and at end; otherwise it writes
// through. Writes from other goroutines meanwhile — a close_notify, a
// KeyUpdate answer — are appended behind the records already collected,
// so the byte stream keeps crypto/tls's order.
type recordBatcher struct {
	net.Conn
	mu  sync.Mutex
	buf []byte // non-nil while batching
}

func (b *recordBatcher) begin(buf []byte) {
	b.mu.Lock()
	b.buf = buf[:0]
	b.mu.Unlock()
}

// end sends what was collected and stops batching; the buffer given to
// begin is no longer referenced.
func (b *recordBatcher) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	b.buf = nil
	return err
}

func (b *recordBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return b.Conn.Write(p)
	}
	if len(b.buf)+len(p) > cap(b.buf) {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(b.buf) {
			return b.Conn.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *recordBatcher) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}
