package upstream

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http/httputil"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the write calls made on a real connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tlsSink starts a loopback TLS 1.3 server that reads everything one
// client sends and reports it.
func tlsSink(t *testing.T) (addr string, got <-chan []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sink.test"},
		DNSNames: []string{"sink.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		ch <- b
	}()
	return l.Addr().String(), ch
}

// dialBatched connects a TunnelConn to addr the way dialTunnel does, with
// the write calls on the TCP connection counted.
func dialBatched(t *testing.T, addr string, bufs httputil.BufferPool) (*TunnelConn, *countingConn) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingConn{Conn: raw}
	b := &recordBatcher{Conn: counted}
	c := tls.Client(b, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &TunnelConn{Conn: c, raw: b, bufs: bufs}, counted
}

// TestTunnelConnSendsEachWriteInOneCall: after the first 128 KiB (which
// crypto/tls sends in small records), a Write of a copy buffer's read
// limit leaves in one write(2) where crypto/tls alone makes two, and every
// byte arrives intact and in order, whatever the sizes written.
func TestTunnelConnSendsEachWriteInOneCall(t *testing.T) {
	addr, got := tlsSink(t)
	bufs := newTestBuffers(32 << 10)
	c, counted := dialBatched(t, addr, bufs)

	var sent bytes.Buffer
	send := func(n int) {
		t.Helper()
		p := make([]byte, n)
		rand.Read(p)
		if w, err := c.Write(p); err != nil || w != n {
			t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
		}
		sent.Write(p)
	}
	for _, n := range []int{1, 100, 5000, 16 << 10, 40 << 10, 100 << 10, 3} { // 160 KiB: past the small records
		send(n)
	}
	limit := c.ReadLimit(32 << 10)
	for range 8 {
		before := counted.writes.Load()
		send(limit)
		if calls := counted.writes.Load() - before; calls != 1 {
			t.Fatalf("a Write of %d bytes (two TLS records) took %d write calls, want 1", limit, calls)
		}
	}
	send(200 << 10) // larger than the batch buffer: several calls, bytes intact
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, sent.Bytes()) {
			t.Fatalf("upstream read %d bytes, want the %d sent, unchanged", len(b), sent.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream did not see the end of the stream")
	}
}

// TestTunnelConnCloseDuringWrite: an abort closes the connection while the
// copier writes; the write fails instead of hanging, with no data race
// (run with -race).
func TestTunnelConnCloseDuringWrite(t *testing.T) {
	addr, _ := tlsSink(t)
	c, _ := dialBatched(t, addr, newTestBuffers(32<<10))
	done, wrote := make(chan error, 1), make(chan struct{})
	go func() {
		p := make([]byte, 32<<10)
		for i := 0; ; i++ {
			if _, err := c.Write(p); err != nil {
				done <- err
				return
			}
			if i == 0 {
				close(wrote)
			}
		}
	}()
	<-wrote
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Write after Close returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write did not return after Close")
	}
}

func TestMaxSealedPlaintext(t *testing.T) {
	for size, want := range map[int]int{4 << 10: 4074, 16 << 10: 16362, 32 << 10: 32724, 64 << 10: 65448, 1 << 20: 1047168} {
		if got := maxSealedPlaintext(size); got != want {
			t.Errorf("maxSealedPlaintext(%d) = %d, want %d", size, got, want)
		}
	}
}

// testBuffers is a BufferPool of fixed-size buffers, as the proxy's.
type testBuffers struct{ size int }

func newTestBuffers(size int) testBuffers { return testBuffers{size} }

func (b testBuffers) Get() []byte  { return make([]byte, b.size) }
func (b testBuffers) Put(_ []byte) {}
