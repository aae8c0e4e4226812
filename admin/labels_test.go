package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/proxy"
)

// TestIdentityLabelsCapped: past admin.max_identity_labels distinct SPIFFE
// IDs, requests are counted under spiffe_id="other", so a node with many
// identities cannot grow the series without bound.
func TestIdentityLabelsCapped(t *testing.T) {
	m := NewMonitor("test", 2, Sources{})
	for i := range 10 {
		id := spiffeid.RequireFromString("spiffe://example.org/w" + string(rune('a'+i)))
		m.Observe(proxy.Event{Kind: "request", Route: "echo", ID: id, Decision: "allow", Status: 200, Duration: time.Millisecond})
	}
	got := testutil.CollectAndCount(m.requests)
	if got != 3 {
		t.Fatalf("%d series; want 2 IDs of their own and other", got)
	}
	want := `
# HELP procmesh_requests_total HTTP requests on the main socket by route, decision, status code and calling SPIFFE ID (capped: admin.max_identity_labels; the rest are "other").
# TYPE procmesh_requests_total counter
procmesh_requests_total{code="200",decision="allow",route="echo",spiffe_id="other"} 8
procmesh_requests_total{code="200",decision="allow",route="echo",spiffe_id="spiffe://example.org/wa"} 1
procmesh_requests_total{code="200",decision="allow",route="echo",spiffe_id="spiffe://example.org/wb"} 1
`
	if err := testutil.CollectAndCompare(m.requests, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
