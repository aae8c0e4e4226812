package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/procmesh/procmesh/registry"
)

// BenchmarkFastPathKeepAlive sends requests one after another on one
// keep-alive connection of this process, through the HTTP/1.1 fast path,
// to the real mTLS echo upstream, all in this process: ns/op is a whole
// exchange on two cores (client, procmesh and upstream), allocs/op counts
// all three. It is the in-process figure behind the suite's keep-alive
// scenario (make bench), for changes too small for the suite's noise.
func BenchmarkFastPathKeepAlive(b *testing.B) {
	e := newEnv(b, envOptions{defaultAllow: true, entries: []registry.Entry{
		{ID: idA, Selectors: []string{"unix:uid:" + strconv.Itoa(os.Getuid())}},
	}})
	c, err := net.Dial("unix", e.sock)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /who/a HTTP/1.1\r\nHost: echo.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	get := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
	get() // attestation, SVID, upstream connection
	before := e.srv.Stats().FastRequests
	b.ReportAllocs()
	for b.Loop() {
		get()
	}
	if n := e.srv.Stats().FastRequests - before; n < int64(b.N) {
		b.Fatalf("%d of %d requests took the fast path", n, b.N)
	}
}
