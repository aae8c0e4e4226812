package admin

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/wlapi"
	"github.com/procmesh/procmesh/workload"
)

// TestWorkloadAPIRefusalsByReason: a Workload API caller without an
// identity counts under the egress socket's reasons, the Workload API's
// own foreign-writer error (THREATS I12 on its socket) included.
func TestWorkloadAPIRefusalsByReason(t *testing.T) {
	m := NewMonitor("test", 2, Sources{})
	m.WorkloadAPI("FetchX509SVID", "PermissionDenied", &wlapi.ForeignWriterError{Writer: 2, Connector: 1})
	m.WorkloadAPI("FetchX509SVID", "PermissionDenied", &workload.NoMatchError{Process: &attest.Process{}})
	m.WorkloadAPI("FetchX509SVID", "OK", nil)
	for reason, want := range map[string]float64{"foreign_writer": 1, "no_entry": 1} {
		if got := testutil.ToFloat64(m.refusals.WithLabelValues(reason)); got != want {
			t.Errorf("refusals{reason=%q} = %v; want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(m.wlapiRPCs.WithLabelValues("FetchX509SVID", "PermissionDenied")); got != 2 {
		t.Errorf("PermissionDenied RPCs = %v; want 2", got)
	}
}
