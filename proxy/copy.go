package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// closeWriter is a connection that can half-close: *net.UnixConn,
// *net.TCPConn and *tls.Conn (close_notify) all can.
type closeWriter interface {
	net.Conn
	CloseWrite() error
}

// splice copies client→upstream and upstream→client until both directions
// end. On EOF from one side it half-closes the other so the peer sees the
// end of the stream; on an error in either direction it closes both so the
// other copier stops too. It returns the bytes moved each way and the first
// error, labelled by direction.
func splice(bufs, bulk *bufferPool, client, upstream closeWriter) (up, down int64, err error) {
	var wg sync.WaitGroup
	var upErr, downErr error
	var once sync.Once
	abort := func() {
		once.Do(func() {
			client.Close()
			upstream.Close()
		})
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		up, upErr = copyHalf(bufs, bulk, upstream, client)
		if upErr != nil {
			tellForeignWriter(client, upErr)
			abort()
		}
	}()
	go func() {
		defer wg.Done()
		down, downErr = copyHalf(bufs, bulk, client, upstream)
		if downErr != nil {
			abort()
		}
	}()
	wg.Wait()
	abort()
	switch {
	case upErr != nil && !isClosed(upErr):
		return up, down, fmt.Errorf("client to upstream: %w", upErr)
	case downErr != nil && !isClosed(downErr):
		return up, down, fmt.Errorf("upstream to client: %w", downErr)
	}
	return up, down, nil
}

// readLimiter is a destination that takes at most ReadLimit(size) bytes
// per Write from a copy buffer of size bytes to write them efficiently: a
// upstream.TunnelConn, whose records must fit its batch buffer.
type readLimiter interface{ ReadLimit(size int) int }

// bulkAfter is how many reads in a row must fill the copy buffer before
// copyHalf moves to a bulk buffer.
const bulkAfter = 4

// copyHalf copies src to dst with a pooled buffer (io.CopyBuffer would
// ignore it for destinations with ReadFrom) and half-closes dst at EOF.
//
// It starts with a buffer of bufs (upstream.copy_buffer_size) and moves to
// one of bulk (four times that) after bulkAfter reads in a row filled the
// buffer, back when a read brings less than a quarter of it: a bulk
// transfer then takes a quarter of the system calls and, into a tunnel,
// TLS writes (one stream moved 37 % more with 128 KiB buffers than with
// 32 KiB, docs/tuning.md), while an open tunnel that carries little keeps
// holding the small buffer.
func copyHalf(bufs, bulk *bufferPool, dst closeWriter, src net.Conn) (int64, error) {
	pool := bufs
	pooled := pool.Get()
	defer func() { pool.Put(pooled) }()
	limiter, _ := dst.(readLimiter)
	sized := func() []byte {
		if limiter != nil {
			return pooled[:limiter.ReadLimit(len(pooled))]
		}
		return pooled
	}
	buf := sized()
	full := 0
	var n int64
	for {
		nr, rerr := src.Read(buf)
		switch {
		case nr == len(buf):
			full++
		case nr < len(buf)/4:
			full = 0
		}
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return n, dst.CloseWrite()
		}
		if rerr != nil {
			return n, rerr
		}
		switch {
		case pool == bufs && full >= bulkAfter && bulk != nil:
			pool.Put(pooled)
			pool, pooled = bulk, bulk.Get()
			buf = sized()
		case pool == bulk && full == 0:
			pool.Put(pooled)
			pool, pooled = bufs, bufs.Get()
			buf = sized()
		}
	}
}

// isClosed reports errors that only say the other copier already closed
// the connection.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
