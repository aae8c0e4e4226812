package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/proxy"
)

// TestUpstreamHTTP3: as TestUpstreamHTTP2, over QUIC: every request
// arrives over HTTP/3 with its caller's ID, no QUIC connection carries two
// identities, and each identity has one QUIC connection.
func TestUpstreamHTTP3(t *testing.T) {
	t.Parallel()
	e, a, b := twoClients(t)
	up := e.startEchoWith(echo.Options{HTTP3: true})
	e.withRoutes(e.srv, route("echo-h3", proxy.ProtocolHTTP3, up.Addr()))
	interleaved(t, e, up, "echo-h3.test", "HTTP/3.0", 2, 10, a, b)

	// A CONNECT tunnel to an http3 route is TCP+TLS offering http/1.1.
	rs, err := e.run(a, -1, "connect", "PM_URL=http://echo-h3.test/tunnel")
	if err != nil {
		t.Fatal(err)
	}
	if rep := decodeUpstream(t, rs[0]); rep.Proto != "HTTP/1.1" || rep.SPIFFEID != idA.String() {
		t.Errorf("tunnel to the http3 route: %+v", rep)
	}
}

// TestUpstreamHTTP3_Unreachable: an http3 route whose upstream serves no
// QUIC fails with a 502 naming the HTTP/3 handshake, within the dial
// timeout.
func TestUpstreamHTTP3_Unreachable(t *testing.T) {
	t.Parallel()
	e, a := oneClient(t, envOptions{defaultAllow: true})
	sp := e.startProxy("h3dead", proxy.UpstreamOptions{DialTimeout: 300 * time.Millisecond},
		route("dead", proxy.ProtocolHTTP3, e.echo.Addr())) // TCP only
	e.wantBadGateway(a, "http://dead.test/", "HTTP/3 (QUIC) handshake with upstream "+e.echo.Addr(), "PM_SOCK="+sp.sock)
}

// TestUpstreamHTTP3_ResponseHeaderTimeout: ResponseHeaderTimeout bounds
// the wait for an HTTP/3 upstream's answer too (http3.Transport has no
// such setting of its own).
func TestUpstreamHTTP3_ResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	e, a := oneClient(t, envOptions{defaultAllow: true})
	ln, err := quic.ListenAddr("127.0.0.1:0", e.hostileTLS(http3.NextProtoH3), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts the request and never answers
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := ln.Accept(ctx); err == nil {
			c.AcceptStream(ctx)
			<-ctx.Done()
		}
	}()
	sp := e.startProxy("h3slow", proxy.UpstreamOptions{ResponseHeaderTimeout: 200 * time.Millisecond},
		route("slow", proxy.ProtocolHTTP3, ln.Addr().String()))
	start := time.Now()
	e.wantBadGateway(a, "http://slow.test/", "timeout awaiting response headers", "PM_SOCK="+sp.sock)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v", d)
	}
}

// TestThreat_I6_QUICSessionPerIdentity: QUIC resumes TLS sessions too, and
// a resumed handshake sends no client certificate. a's QUIC connection
// idles out and its next request resumes a's session on a new connection;
// b's first connection, dialled after that, must not resume a's session:
// it arrives as b.
func TestThreat_I6_QUICSessionPerIdentity(t *testing.T) {
	t.Parallel()
	e, a, b := twoClients(t)
	up := e.startEchoWith(echo.Options{HTTP3: true})
	sp := e.startProxy("h3idle", proxy.UpstreamOptions{QUICMaxIdleTimeout: 150 * time.Millisecond},
		route("idle", proxy.ProtocolHTTP3, up.Addr()))
	get := func(name, bin string) upstreamReply {
		rs, err := e.run(bin, -1, "origin", "PM_SOCK="+sp.sock, "PM_URL=http://idle.test/who/"+name)
		if err != nil {
			t.Fatal(err)
		}
		return decodeUpstream(t, rs[0])
	}
	first := get("a", a)
	// Requests 250ms apart: each finds the last connection idled out.
	var again upstreamReply
	for i := 0; ; i++ {
		time.Sleep(250 * time.Millisecond)
		if again = get("a", a); again.Conn != first.Conn {
			break
		}
		if i == 40 { // 10s: generous for a loaded 2-core machine
			t.Fatal("a's QUIC connection never idled out")
		}
	}
	if !again.Resumed {
		t.Fatal("a's second QUIC connection did not resume its session: the test would not see sessions crossing identities")
	}
	if rep := get("b", b); rep.SPIFFEID != idB.String() || rep.Resumed {
		t.Errorf("b's first QUIC connection arrived as %s (resumed %v)", rep.SPIFFEID, rep.Resumed)
	}
	for _, r := range up.Records() {
		if caller := strings.TrimPrefix(r.Path, "/who/"); r.SPIFFEID.String() != "spiffe://example.org/"+caller {
			t.Errorf("request from %s arrived as %s (QUIC connection %d, resumed %v)", caller, r.SPIFFEID, r.ConnID, r.Resumed)
		}
	}
}
