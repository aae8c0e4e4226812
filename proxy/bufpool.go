package proxy

import (
	"net/http/httputil"
	"sync"
)

// DefaultCopyBufferSize is the copy buffer used for tunnels, raw sockets
// and HTTP bodies: larger than a TLS record (16 KiB), so one read can fill
// a whole record.
const DefaultCopyBufferSize = 32 << 10

// bulkSize is the buffer of a bulk transfer (copyHalf): four copy
// buffers, but not over 1 MiB unless the copy buffer itself is larger.
func bulkSize(size int) int {
	if size <= 0 {
		size = DefaultCopyBufferSize
	}
	return max(size, min(4*size, 1<<20))
}

// bufferPool recycles copy buffers. Without it every forwarded request
// allocated a fresh 32 KiB buffer in httputil.ReverseProxy: most of the
// bytes allocated per request, and the GC work that came with them. It
// implements httputil.BufferPool.
type bufferPool struct {
	size int
	p    sync.Pool
}

func newBufferPool(size int) *bufferPool {
	if size <= 0 {
		size = DefaultCopyBufferSize
	}
	bp := &bufferPool{size: size}
	bp.p.New = func() any { b := make([]byte, size); return &b }
	return bp
}

// NewCopyBufferPool returns a pool of copy buffers of size bytes
// (DefaultCopyBufferSize when size <= 0), for an httputil.ReverseProxy or
// copy loop outside this package: the inbound listeners'.
func NewCopyBufferPool(size int) httputil.BufferPool { return newBufferPool(size) }

// Get returns a buffer of the pool's size.
func (bp *bufferPool) Get() []byte { return *bp.p.Get().(*[]byte) }

// Put returns b to the pool; buffers of another size are dropped.
func (bp *bufferPool) Put(b []byte) {
	if cap(b) != bp.size {
		return
	}
	b = b[:bp.size]
	bp.p.Put(&b)
}

// get and put move a buffer by its handle: a pool user that keeps the
// handle puts it back without allocating a new one.
func (bp *bufferPool) get() *[]byte { return bp.p.Get().(*[]byte) }

func (bp *bufferPool) put(b *[]byte) { bp.p.Put(b) }
