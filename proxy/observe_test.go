package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/workload"
)

// TestRefusalAndErrorKinds: the metric labels name the THREATS row of each
// refusal the resolver and the proxy return, through wrapping, and the
// kinds of errors; the label sets are bounded.
func TestRefusalAndErrorKinds(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("proxy: %w", err) }
	proc := func(p attest.Process) *attest.Process { return &p }
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{wrap(&workload.ConnectRecordError{PID: 1, Reason: "exec'd"}), "connect_record"},
		{wrap(&foreignWriterError{writer: 2, connector: 1}), "foreign_writer"},
		{wrap(&workload.RateLimitError{UID: 1000}), "rate_limited"},
		{wrap(&workload.NoMatchError{Process: proc(attest.Process{Traced: true})}), "traced"},
		{wrap(&workload.NoMatchError{Process: proc(attest.Process{InjectedCode: []string{"LD_PRELOAD"}})}), "injected_code"},
		{wrap(&workload.NoMatchError{Process: proc(attest.Process{}), Provider: "the SPIRE agent"}), "provider"},
		{wrap(&workload.NoMatchError{Process: proc(attest.Process{ExePathForeign: true})}), "foreign_mount_namespace"},
		{wrap(&workload.NoMatchError{Process: proc(attest.Process{})}), "no_entry"},
		{wrap(attest.ErrPeerGone), "process_gone"},
		{errors.New("something else"), "other"},
	} {
		if got := RefusalKind(c.err); got != c.want {
			t.Errorf("RefusalKind(%v) = %q; want %q", c.err, got, c.want)
		}
	}
	_, dialErr := net.Dial("tcp", "127.0.0.1:1")
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{wrap(&limitError{what: "too big", key: "limits.max_request_body_bytes"}), "limit"},
		{wrap(context.DeadlineExceeded), "timeout"},
		{wrap(context.Canceled), "canceled"},
		{fmt.Errorf("dial upstream 127.0.0.1:1: %w", dialErr), "dial"},
		{errors.New("TLS handshake with upstream x: remote error"), "tls"},
		{errors.New("something else"), "other"},
	} {
		if got := ErrorKind(c.err); got != c.want {
			t.Errorf("ErrorKind(%v) = %q; want %q", c.err, got, c.want)
		}
	}
}
