package proxy_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/proxy"
)

// protos returns the upstream protocol of each answer.
func protos(t *testing.T, rs []clientResult, id string) []string {
	t.Helper()
	var out []string
	for _, r := range rs {
		rep := decodeUpstream(t, r)
		if rep.SPIFFEID != id {
			t.Fatalf("upstream saw %s, want %s", rep.SPIFFEID, id)
		}
		out = append(out, rep.Proto)
	}
	return out
}

func countLines(b *logtest.Buffer, sub string) int { return len(b.Lines(sub)) }

const (
	movedToH3 = "auto route moved to HTTP/3"
	h3Failed  = "HTTP/3 to the upstream failed"
)

// TestUpstreamAuto: a route with protocol auto.
func TestUpstreamAuto(t *testing.T) {
	t.Parallel()
	e, a := oneClient(t, envOptions{defaultAllow: true})
	id := idA.String()
	opts := proxy.UpstreamOptions{DialTimeout: 300 * time.Millisecond}

	// The first request goes over h2, learns Alt-Svc from the answer, and
	// later ones go over HTTP/3 once the background handshake succeeded;
	// then HTTP/3 stays. When the upstream stops serving HTTP/3, the next
	// request falls back to TCP without failing, and the route stays there.
	t.Run("learns h3 and falls back", func(t *testing.T) {
		up := e.startEchoWith(echo.Options{HTTP3: true, AdvertiseHTTP3: true})
		sp := e.startProxy("auto", opts, route("auto", proxy.ProtocolAuto, up.Addr()))
		rs, err := e.run(a, -1, "poll", "PM_SOCK="+sp.sock, "PM_URL=http://auto.test/", "PM_PROTO=HTTP/3.0", "PM_N=500", "PM_GAP=10ms", "PM_AFTER=5")
		if err != nil {
			t.Fatal(err)
		}
		ps := protos(t, rs, id)
		if ps[0] != "HTTP/2.0" {
			t.Errorf("first request over %s, want HTTP/2.0", ps[0])
		}
		first := strings.Index(strings.Join(ps, ","), "HTTP/3.0")
		tail := strings.Join(ps, ",")[max(first, 0):]
		if first < 0 || strings.Contains(tail, "HTTP/2.0") || len(strings.Split(tail, ",")) != 6 {
			t.Fatalf("protocols %v: want HTTP/2.0 until the switch, then HTTP/3.0 for 6 requests", ps)
		}
		if n := countLines(sp.log, movedToH3); n != 1 {
			t.Errorf("want one %q log line, got %d:\n%s", movedToH3, n, sp.log)
		}
		for proto, conns := range map[string]map[uint64]map[string]bool{"HTTP/2.0": idsPerConn(up.Records(), "HTTP/2.0"), "HTTP/3.0": idsPerConn(up.Records(), "HTTP/3.0")} {
			if len(conns) != 1 {
				t.Errorf("%s requests used %d connections, want 1", proto, len(conns))
			}
		}

		up.StopHTTP3()
		rs, err = e.run(a, -1, "poll", "PM_SOCK="+sp.sock, "PM_URL=http://auto.test/", "PM_N=5")
		if err != nil {
			t.Fatal(err)
		}
		if ps := protos(t, rs, id); fmt.Sprint(ps) != "[HTTP/2.0 HTTP/2.0 HTTP/2.0 HTTP/2.0 HTTP/2.0]" {
			t.Errorf("after HTTP/3 went away: %v, want every request over HTTP/2.0", ps)
		}
		if n := countLines(sp.log, h3Failed); n != 1 {
			t.Errorf("want one %q log line, got %d:\n%s", h3Failed, n, sp.log)
		}
	})

	// Alt-Svc advertises h3 where nothing answers QUIC: the background
	// handshake fails, every request stays on h2, and it is logged once.
	t.Run("h3 unavailable stays on h2", func(t *testing.T) {
		up := e.startEchoWith(echo.Options{AdvertiseHTTP3: true})
		sp := e.startProxy("auto-dead", opts, route("auto-dead", proxy.ProtocolAuto, up.Addr()))
		rs, err := e.run(a, -1, "poll", "PM_SOCK="+sp.sock, "PM_URL=http://auto-dead.test/", "PM_N=1")
		if err != nil {
			t.Fatal(err)
		}
		if !eventually(5*time.Second, func() bool { return countLines(sp.log, h3Failed) > 0 }) {
			t.Fatalf("no %q log line:\n%s", h3Failed, sp.log)
		}
		more, err := e.run(a, -1, "poll", "PM_SOCK="+sp.sock, "PM_URL=http://auto-dead.test/", "PM_N=10")
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range protos(t, append(rs, more...), id) {
			if p != "HTTP/2.0" {
				t.Errorf("request %d over %s, want HTTP/2.0", i, p)
			}
		}
		if n := countLines(sp.log, h3Failed); n != 1 {
			t.Errorf("want one %q log line, got %d:\n%s", h3Failed, n, sp.log)
		}
	})

	// Alt-Svc naming another host (here one that does serve HTTP/3 for the
	// upstream) is not followed: procmesh dials only the route's upstream
	// host (THREATS P4).
	t.Run("other host ignored", func(t *testing.T) {
		up := e.startEchoWith(echo.Options{HTTP3: true})
		_, port, _ := net.SplitHostPort(up.Addr())
		up.SetAltSvc(fmt.Sprintf(`h3="localhost:%s"`, port))
		sp := e.startProxy("auto-other", opts, route("auto-other", proxy.ProtocolAuto, up.Addr()))
		rs, err := e.run(a, -1, "poll", "PM_SOCK="+sp.sock, "PM_URL=http://auto-other.test/", "PM_N=30", "PM_GAP=10ms")
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range protos(t, rs, id) {
			if p != "HTTP/2.0" {
				t.Fatalf("request %d over %s after an Alt-Svc naming another host", i, p)
			}
		}
		if l := sp.log.String(); strings.Contains(l, movedToH3) || strings.Contains(l, h3Failed) {
			t.Errorf("procmesh tried the other host:\n%s", l)
		}
	})
}
