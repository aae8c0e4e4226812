package proxy_test

import (
	"testing"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/proxy"
)

// TestUpstreamHTTP2: clients a and b, two processes each, interleaved,
// over a route with protocol http2. The upstream's per-request records
// show HTTP/2, every request carrying its caller's SPIFFE ID, no
// connection carrying two identities, and each identity's requests from
// two client connections multiplexed on one upstream connection.
func TestUpstreamHTTP2(t *testing.T) {
	t.Parallel()
	e, a, b := twoClients(t)
	up := e.startEchoWith(echo.Options{})
	e.withRoutes(e.srv, route("echo-h2", proxy.ProtocolHTTP2, up.Addr()))
	interleaved(t, e, up, "echo-h2.test", "HTTP/2.0", 2, 10, a, b)
}

// TestUpstreamHTTP2_RequiresH2: an http2 route to an upstream that does not
// speak HTTP/2 fails each request with a 502 that says why, whether the
// upstream refuses ALPN h2 or ignores ALPN altogether.
func TestUpstreamHTTP2_RequiresH2(t *testing.T) {
	t.Parallel()
	e, a := oneClient(t, envOptions{defaultAllow: true})
	h1only := e.startEchoWith(echo.Options{DisableHTTP2: true})
	e.withRoutes(e.srv,
		route("h1only", proxy.ProtocolHTTP2, h1only.Addr()),
		route("noalpn", proxy.ProtocolHTTP2, e.raw.Addr()), // TCP echo: TLS without ALPN
	)
	for host, want := range map[string]string{
		"h1only.test": "no application protocol",
		"noalpn.test": "did not negotiate HTTP/2",
	} {
		e.wantBadGateway(a, "http://"+host+"/", want)
	}
	if n := len(h1only.Records()); n != 0 {
		t.Errorf("the HTTP/1.1-only upstream answered %d requests", n)
	}
}
