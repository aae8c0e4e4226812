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

// BenchmarkMonitorInbound is the cost an inbound request pays for its
// metric: a map lookup once its labels have been seen.
func BenchmarkMonitorInbound(b *testing.B) {
	m := NewMonitor("test", 2, Sources{})
	b.ReportAllocs()
	for b.Loop() {
		m.Inbound("inbound_request", "orders", "allow", 200)
	}
}
