package proxy

import (
	"bufio"
	"io"
	"sync"
)

// ioPool pools the fast path's buffered readers (of requests) and writers
// (of responses): a connection holds one only while it reads or writes a
// message, so an idle connection holds none.
type ioPool[T interface{ Reset(A) }, A any] struct {
	p    sync.Pool
	make func(A) T
}

func newReaderPool(size int) *ioPool[*bufio.Reader, io.Reader] {
	return &ioPool[*bufio.Reader, io.Reader]{make: func(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, size) }}
}

func newWriterPool(size int) *ioPool[*bufio.Writer, io.Writer] {
	return &ioPool[*bufio.Writer, io.Writer]{make: func(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, size) }}
}

// get returns a pooled T reset to a, or a new one.
func (p *ioPool[T, A]) get(a A) T {
	if v, ok := p.p.Get().(T); ok {
		v.Reset(a)
		return v
	}
	return p.make(a)
}

// put returns v, let go of what it read or wrote.
func (p *ioPool[T, A]) put(v T) {
	var none A
	v.Reset(none)
	p.p.Put(v)
}
