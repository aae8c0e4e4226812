package proxy

import (
	"io"
	"net"
	"path/filepath"
	"strconv"
	"testing"
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
			bufs := newBufferPool(0)
			spliced := make(chan error, 1)
			go func() { _, _, err := splice(bufs, proxyIn, proxyOut); spliced <- err }()
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
