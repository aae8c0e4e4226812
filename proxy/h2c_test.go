package proxy_test

import (
	"testing"
)

// TestDownstreamH2C: a client speaking prior-knowledge HTTP/2 cleartext on
// the main socket is attested and forwarded like an HTTP/1.1 one.
func TestDownstreamH2C(t *testing.T) {
	e, a := oneClient(t, envOptions{defaultAllow: true})
	rs, err := e.run(a, -1, "h2c", "PM_URL=http://echo.test/over-h2c", "PM_N=3")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("got %d replies, want 3", len(rs))
	}
	for _, r := range rs {
		if r.Proto != "HTTP/2.0" {
			t.Fatalf("client leg spoke %q, want HTTP/2.0", r.Proto)
		}
		if rep := decodeReply(t, r); rep.SPIFFEID != idA.String() || rep.Path != "/over-h2c" {
			t.Fatalf("upstream saw %+v", rep)
		}
	}
	if len(e.audit.Lines(`"event":"request"`, `"spiffe_id":"spiffe://example.org/a"`)) != 3 {
		t.Errorf("want 3 request audit lines:\n%s", e.audit.String())
	}
}
