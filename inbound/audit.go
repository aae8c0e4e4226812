package inbound

import (
	"errors"
	"net"
	"time"

	"github.com/procmesh/procmesh/policy"
)

// auditEvent is one inbound audit line: a refused handshake, a request or
// a tcp connection. It names the caller by its verified SPIFFE ID and its
// address, and the serving process when known.
type auditEvent struct {
	kind     string
	listener string
	peer     *peer
	addr     net.Addr
	start    time.Time
	method   string
	target   string
	decision *policy.Decision
	serving  *serving
	status   int
	up, down int64
	err      error
}

func (l *listener) audit(e *auditEvent) {
	log := &l.srv.opts.Audit
	ev := log.Log().Str("event", e.kind).Str("inbound", e.listener)
	if e.peer != nil && !e.peer.id.IsZero() {
		ev = ev.Str("peer_id", e.peer.id.String())
		if len(e.peer.hash) >= 12 {
			ev = ev.Str("peer_cert_sha256", e.peer.hash[:12])
		}
	}
	if e.addr != nil {
		ev = ev.Str("peer_addr", e.addr.String())
	}
	if e.method != "" {
		ev = ev.Str("method", e.method).Str("target", e.target)
	}
	decision := "deny"
	if e.decision != nil {
		decision = e.decision.Verdict()
		ev = ev.Str("rule", e.decision.Rule)
		if !e.decision.Allow {
			ev = ev.Str("reason", e.decision.Reason)
		}
	}
	if e.err != nil {
		var se *ServiceError
		if errors.As(e.err, &se) {
			decision = "deny"
			ev = ev.Str("service", se.Service)
			if se.PID != 0 {
				ev = ev.Int32("service_pid", se.PID).Str("service_exe", se.Exe)
			}
		}
		var le *limitError
		if errors.As(e.err, &le) {
			ev = ev.Str("limit", le.key)
		}
		ev = ev.Str("error", e.err.Error())
	}
	if e.serving != nil {
		ev = ev.Int32("service_pid", e.serving.pid).Str("service_exe", e.serving.exe)
	}
	ev = ev.Str("decision", decision)
	if e.status != 0 {
		ev = ev.Int("status", e.status)
	}
	ev.Int64("bytes_up", e.up).Int64("bytes_down", e.down).
		Float64("duration_ms", float64(time.Since(e.start).Microseconds())/1000).Send()
	if o := l.srv.opts.Observe; o != nil {
		o(e.kind, e.listener, decision, e.status)
	}
}

// auditConn writes the line of a connection refused before it was served:
// a failed handshake (no certificate, an untrusted or expired one, an ID
// no rule could allow, or a service that is not the identity's) or a
// connection limit.
func (l *listener) auditConn(p *peer, addr net.Addr, err error, start time.Time) {
	l.audit(&auditEvent{kind: "inbound_handshake", listener: l.cfg.Load().Name, peer: p, addr: addr, start: start, err: err})
}
