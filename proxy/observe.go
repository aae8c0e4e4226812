package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/internal/credread"
	"github.com/procmesh/procmesh/workload"
)

// Observer is told of every request and connection once, as its audit
// line is written. It is called on the serving goroutine and must not
// block.
type Observer interface {
	Observe(Event)
}

// Event is one request or connection, as its audit line records it.
type Event struct {
	Kind     string          // "request" or "connection"
	Route    string          // "" when the caller named no route or was refused before
	ID       spiffeid.ID     // zero when the caller got no identity
	Process  *attest.Process // the caller when attested (matched or not); nil otherwise
	PID      int32           // the caller's PID, also when Process is nil
	Decision string          // "allow", "deny" or "audit"
	Status   int             // HTTP status; 0 for a connection that got none
	Duration time.Duration
	// Refusal is why the caller got no identity (RefusalKind names it);
	// Err is what ended the request or connection early (ErrorKind).
	Refusal, Err error
}

// event is e as an Event.
func (e *auditEvent) event() Event {
	ev := Event{Kind: e.kind, Decision: "deny", Status: e.status, Duration: time.Since(e.start), Refusal: e.refusal, Err: e.err}
	if e.route != nil {
		ev.Route = e.route.Name
	}
	if e.decision != nil {
		ev.Decision = e.decision.Verdict()
	}
	if e.id != nil {
		ev.ID, ev.Process, ev.PID = e.id.ID(), e.id.Process, e.id.Process.PID
	}
	var nm *workload.NoMatchError
	var cr *workload.ConnectRecordError
	switch {
	case errors.As(e.refusal, &nm):
		ev.Process, ev.PID = nm.Process, nm.Process.PID
	case errors.As(e.refusal, &cr):
		ev.PID = cr.PID
	}
	return ev
}

// RefusalKind names why a caller got no identity, from a bounded set (for
// metric labels): "connect_record" (THREATS I11), "foreign_writer" (I12),
// "traced" and "injected_code" (I17), "foreign_mount_namespace" (I16: an
// executable path procmesh cannot see as the process does), "provider" (the
// SPIRE agent issued nothing, I14), "no_entry" (I7), "rate_limited" (F12),
// "process_gone", "other"; "" for nil.
func RefusalKind(err error) string {
	if err == nil {
		return "" // before the targets of errors.As, which escape
	}
	var nm *workload.NoMatchError
	var cr *workload.ConnectRecordError
	var rl *workload.RateLimitError
	var fw credread.WriterError
	switch {
	case errors.As(err, &cr):
		return "connect_record"
	case errors.As(err, &fw):
		return "foreign_writer"
	case errors.As(err, &rl):
		return "rate_limited"
	case errors.As(err, &nm):
		p := nm.Process
		switch {
		case p.Traced:
			return "traced"
		case len(p.InjectedCode) > 0:
			return "injected_code"
		case nm.Provider != "":
			return "provider"
		case p.ExePathForeign:
			return "foreign_mount_namespace"
		}
		return "no_entry"
	case errors.Is(err, attest.ErrPeerGone):
		return "process_gone"
	}
	return "other"
}

// ErrorKind names what ended a request or connection early, from a
// bounded set: "limit" (a configured limit), "foreign_writer", "timeout",
// "canceled", "dial" (connecting to the upstream), "tls" (the upstream
// handshake or its certificate), "other"; "" for nil.
func ErrorKind(err error) string {
	if err == nil {
		return ""
	}
	var le *limitError
	var fw *foreignWriterError
	var op *net.OpError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &le):
		return "limit"
	case errors.As(err, &fw):
		return "foreign_writer"
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &cv), errors.As(err, &ua), strings.Contains(err.Error(), "TLS handshake"), strings.Contains(err.Error(), "tls: "):
		return "tls"
	case errors.As(err, &op) && op.Op == "dial", strings.Contains(err.Error(), "dial upstream"):
		return "dial"
	}
	return "other"
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
