package inbound_test

import (
	"bytes"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// TestThreat_N4_RapidReset: a caller that opens HTTP/2 streams and resets
// them at once (CVE-2023-44487) has its connection closed by egress's
// rapid-reset rule, with a log line naming its SPIFFE ID and address. The
// streams ask for a slow path, so each handler ends by the reset; with a
// high MaxConcurrentStreams Go's own bound (handlers queued behind it)
// never fills, and only the rule closes the connection.
func TestThreat_N4_RapidReset(t *testing.T) {
	// Go's own bound closes a connection whose unstarted handlers exceed
	// 4 x MaxConcurrentStreams; a high limit keeps it out of the way (a
	// slow machine, -race) so that the test sees procmesh's rule.
	e := newEnv(t, proxy.Limits{MaxConcurrentStreams: 10000})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
	c, err := tls.Dial("tcp", e.addr("orders"), e.clientTLS(e.svid(frontID), appID, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(90 * time.Second))
	fr := http2.NewFramer(c, c)
	c.Write([]byte(http2.ClientPreface))
	fr.WriteSettings()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "orders"}, {Name: ":path", Value: "/slow"}} {
		enc.WriteField(f)
	}
	if f, err := fr.ReadFrame(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*http2.SettingsFrame); !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	fr.WriteSettingsAck()
	done := make(chan struct{})
	go func() { // only reads: the Framer's writes are the loop's
		defer close(done)
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	sent := 0
	for id := uint32(1); sent < 20_000; id += 2 {
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true})
		if err == nil {
			err = fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if err != nil {
			t.Logf("write after %d streams: %v", sent, err)
			break
		}
		sent++
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second): // a loaded machine under -race is slow to read 20,000 streams
		t.Fatalf("the connection is still open after %d reset streams", sent)
	}
	var lines []string
	for i := 0; i < 300 && len(lines) == 0; i++ {
		lines = e.log.Lines("rapid reset")
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"peer_id":"spiffe://example.org/frontend"`) {
		t.Fatalf("want one log line naming the caller, after %d streams sent:\n%s", sent, e.log.String())
	}
	t.Logf("%s; %d streams sent", lines[0], sent)
}
