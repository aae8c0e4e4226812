package inbound_test

import (
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// TestInboundRequestReusesCopyBuffers: a kept-alive HTTP request through
// an inbound listener takes its body copy buffer from a pool. Without one
// httputil.ReverseProxy allocates 32 KiB per request, twice what the
// whole exchange (this test's client included) allocates otherwise. The
// app runs in its own process, so what is counted here is the client and
// procmesh.
func TestInboundRequestReusesCopyBuffers(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http1", policy.Rule{From: []spiffeid.ID{frontID}}))
	c := e.httpClient(e.svid(frontID), false)
	url := "https://" + e.addr("orders") + "/alloc"
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %s", resp.Status)
		}
	}
	for range 20 { // connections, pools and buffers warm
		get()
	}
	const n = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		get()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per >= 32<<10 {
		t.Fatalf("%d bytes allocated per request (client and procmesh), want under 32 KiB: is a copy buffer allocated per request?", per)
	}
}
