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
func splice(bufs *bufferPool, client, upstream closeWriter) (up, down int64, err error) {
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
		up, upErr = copyHalf(bufs, upstream, client)
		if upErr != nil {
			tellForeignWriter(client, upErr)
			abort()
		}
	}()
	go func() {
		defer wg.Done()
		down, downErr = copyHalf(bufs, client, upstream)
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

// copyHalf copies src to dst with a pooled buffer (io.CopyBuffer would
// ignore it for destinations with ReadFrom) and half-closes dst at EOF.
func copyHalf(bufs *bufferPool, dst closeWriter, src net.Conn) (int64, error) {
	pooled := bufs.Get()
	defer bufs.Put(pooled)
	buf := pooled
	if l, ok := dst.(readLimiter); ok {
		buf = pooled[:l.ReadLimit(len(pooled))]
	}
	var n int64
	for {
		nr, rerr := src.Read(buf)
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
	}
}

// isClosed reports errors that only say the other copier already closed
// the connection.
func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
