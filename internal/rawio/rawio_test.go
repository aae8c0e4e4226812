package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// pipe returns two connected sockets of network ("tcp" or "unix"), both
// wrapped.
func pipe(t testing.TB, network string) (net.Conn, net.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c1, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2 := <-accepted
	if c2 == nil {
		t.Fatal("accept failed")
	}
	w1, w2 := Wrap(c1), Wrap(c2)
	if _, ok := w1.(*Conn); !ok {
		t.Fatalf("Wrap(%T) = %T, want *Conn", c1, w1)
	}
	return w1, w2
}

// TestConnConformance runs x/net's net.Conn conformance suite (deadlines,
// Close while blocked, concurrent use, data integrity) on wrapped TCP and
// Unix sockets.
func TestConnConformance(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				c1, c2 = pipe(t, network)
				return c1, c2, func() { c1.Close(); c2.Close() }, nil
			})
		})
	}
}

func TestWrapWithoutDescriptor(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if got := Wrap(c1); got != c1 {
		t.Fatalf("Wrap(net.Pipe) = %T, want the pipe itself", got)
	}
}

// TestWriteWaitsForRoom writes more than the socket buffers hold while the
// peer reads slowly: Write must wait for room (EAGAIN, then the poller)
// and return only once every byte is written, in order.
func TestWriteWaitsForRoom(t *testing.T) {
	a, b := pipe(t, "unix")
	defer a.Close()
	defer b.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	errc := make(chan error, 1)
	go func() {
		n, err := a.Write(want)
		if err == nil && n != len(want) {
			err = errors.New("short write: " + strconv.Itoa(n))
		}
		a.(*Conn).CloseWrite()
		errc <- err
	}()
	var got bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := b.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes, not the %d written", got.Len(), len(want))
	}
}

// TestErrors checks the errors callers test for: io.EOF at the end, a
// net.Error that times out at a deadline, net.ErrClosed after Close, and
// EPIPE-like failure once the peer is gone; each an *net.OpError naming
// "read" or "write", as package net's.
func TestErrors(t *testing.T) {
	a, b := pipe(t, "tcp")
	defer a.Close()

	a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := a.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if !strings.HasPrefix(err.Error(), "read tcp ") {
		t.Fatalf("read past the deadline: %q, want it to start with \"read tcp \"", err)
	}
	a.SetReadDeadline(time.Time{})

	b.Close()
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	var werr error
	for i := 0; i < 100 && werr == nil; i++ { // the first write may still succeed (RST comes back)
		_, werr = a.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	if werr == nil || !strings.HasPrefix(werr.Error(), "write tcp ") {
		t.Fatalf("write to a closed peer: %v, want a write error", werr)
	}

	a.Close()
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}

// TestConcurrentWritesDoNotInterleave: each Write's bytes arrive together,
// even when the socket buffer fills mid-write.
func TestConcurrentWritesDoNotInterleave(t *testing.T) {
	a, b := pipe(t, "unix")
	defer a.Close()
	defer b.Close()
	const writers, size = 4, 1 << 20
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Write(bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
				t.Error(err)
			}
		}()
	}
	go func() { wg.Wait(); a.(*Conn).CloseWrite() }()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*size {
		t.Fatalf("read %d bytes, want %d", len(got), writers*size)
	}
	for i := 0; i < len(got); i += size {
		run := got[i : i+size]
		if bytes.Count(run, run[:1]) != size {
			t.Fatalf("bytes of two writes interleaved at offset %d", i)
		}
	}
}

func TestForwardedMethods(t *testing.T) {
	a, b := pipe(t, "tcp")
	defer a.Close()
	defer b.Close()
	c := a.(*Conn)
	if _, ok := c.NetConn().(*net.TCPConn); !ok {
		t.Fatalf("NetConn() = %T, want *net.TCPConn", c.NetConn())
	}
	if rc, err := c.SyscallConn(); err != nil || rc == nil {
		t.Fatalf("SyscallConn() = %v, %v", rc, err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read after CloseWrite: %v, want io.EOF", err)
	}
}
