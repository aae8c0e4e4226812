package admin

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/proxy"
)

// BenchmarkMonitorObserve is what the metrics add to each request the
// proxy serves (proxy.Observer, called once per audit line).
func BenchmarkMonitorObserve(b *testing.B) {
	m := NewMonitor("bench", 100, Sources{})
	ev := proxy.Event{Kind: "request", Route: "echo", ID: spiffeid.RequireFromString("spiffe://example.org/a"),
		Decision: "allow", Status: 200, Duration: 800 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Observe(ev)
		}
	})
}
