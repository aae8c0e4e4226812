package inbound_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// BenchmarkInbound measures a request from a remote mTLS caller through an
// inbound listener to a Unix-socket app: on a kept-alive connection
// (HTTP/1.1, h2) and on a new connection each time (the TLS handshake and
// the serving-process check included).
func BenchmarkInbound(b *testing.B) {
	e := newEnv(b, proxy.Limits{MaxConnectionsPerIdentity: 100000})
	a := startApp(b, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
	url := "https://" + e.addr("orders") + "/bench"
	svid := e.svid(frontID)
	run := func(b *testing.B, c *http.Client, fresh bool) {
		for b.Loop() {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
			if fresh {
				c.CloseIdleConnections()
			}
		}
	}
	b.Run("keepalive-h1", func(b *testing.B) { run(b, e.httpClient(svid, false), false) })
	b.Run("keepalive-h2", func(b *testing.B) { run(b, e.httpClient(svid, true), false) })
	b.Run("new-connection-h1", func(b *testing.B) { run(b, e.httpClient(svid, false), true) })
}
