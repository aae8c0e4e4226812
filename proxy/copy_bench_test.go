package proxy

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// unixPair returns the two ends of a connected Unix stream socket.
func unixPair(tb testing.TB, name string) (*net.UnixConn, *net.UnixConn) {
	tb.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(tb.TempDir(), name), Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := l.AcceptUnix()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

// BenchmarkSplice measures the copy loop of tunnels and raw sockets: a
// client writes through splice to an upstream that reads everything.
func BenchmarkSplice(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			client, proxyIn := unixPair(b, "in")
			proxyOut, upstream := unixPair(b, "out")
			bufs, bulk := newBufferPool(0), newBufferPool(bulkSize(0))
			spliced := make(chan error, 1)
			go func() { _, _, err := splice(bufs, bulk, proxyIn, proxyOut); spliced <- err }()
			read := make(chan int64, 1)
			go func() { n, _ := io.Copy(io.Discard, upstream); upstream.CloseWrite(); read <- n }()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := client.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			client.CloseWrite()
			if n := <-read; n != int64(size)*int64(b.N) {
				b.Fatalf("upstream read %d bytes, want %d", n, size*b.N)
			}
			if err := <-spliced; err != nil {
				b.Fatal(err)
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// readSizes is a connection that records how much each Read asked for.
type readSizes struct {
	*net.UnixConn
	asked []int
}

func (r *readSizes) Read(p []byte) (int, error) {
	r.asked = append(r.asked, len(p))
	return r.UnixConn.Read(p)
}

// TestCopyHalfBulkBuffer: a stream that keeps filling the copy buffer
// moves to a bulk buffer (four times the size), and back to the small one
// when it slows to small writes; every byte arrives in order.
func TestCopyHalfBulkBuffer(t *testing.T) {
	client, proxyIn := unixPair(t, "in")
	proxyOut, upstream := unixPair(t, "out")
	bufs, bulk := newBufferPool(0), newBufferPool(bulkSize(0))
	src := &readSizes{UnixConn: proxyIn}
	copied := make(chan error, 1)
	go func() { _, err := copyHalf(bufs, bulk, proxyOut, src); copied <- err }()
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(upstream); got <- b }()

	var sent bytes.Buffer
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	write := func(p []byte) {
		if _, err := client.Write(p); err != nil {
			t.Fatal(err)
		}
		sent.Write(p)
	}
	for range 8 { // bulk: the socket buffer stays full
		write(chunk)
	}
	for i := range 20 { // then small writes, each read on its own
		time.Sleep(2 * time.Millisecond)
		write([]byte{byte(i)})
	}
	client.CloseWrite()
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, sent.Bytes()) {
		t.Fatalf("upstream got %d bytes, not the %d sent", len(b), sent.Len())
	}
	small, big := DefaultCopyBufferSize, bulkSize(0)
	if src.asked[0] != small {
		t.Fatalf("first read asked for %d bytes, want %d", src.asked[0], small)
	}
	sawBulk := false
	for _, n := range src.asked {
		sawBulk = sawBulk || n == big
	}
	if !sawBulk {
		t.Fatalf("no read used the bulk buffer (%d bytes): %v", big, src.asked)
	}
	if last := src.asked[len(src.asked)-1]; last != small {
		t.Fatalf("after the small writes reads asked for %d bytes, want %d again", last, small)
	}
}
