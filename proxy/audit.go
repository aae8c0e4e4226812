package proxy

import (
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/workload"
)

// auditEvent is one audit line: a request (HTTP) or a connection (CONNECT
// tunnel or raw socket). It names the workload by process and SPIFFE ID,
// never by a source address.
type auditEvent struct {
	kind     string // "request" or "connection"
	start    time.Time
	id       *workload.Identity
	refusal  error // why the caller got no identity, if it did not
	route    *Route
	method   string
	target   string
	decision *policy.Decision
	status   int
	up, down int64 // bytes client→upstream and upstream→client
	err      error
	jwt      string // the attached JWT-SVID's jti hash; never the token
	written  bool
}

// write emits e to the audit log and the Observer, once.
func (e *auditEvent) write(o *Options) {
	if e.written {
		return
	}
	e.written = true
	if o.Observer != nil {
		o.Observer.Observe(e.event())
	}
	ev := o.Audit.Log().Str("event", e.kind)
	if e.id != nil {
		p := e.id.Process
		ev = ev.Int32("pid", p.PID).Uint32("uid", p.UID).Uint32("gid", p.GID).
			Str("exe", p.ExePath).Str("sha256", shortHash(p.ExeSHA256)).
			Str("spiffe_id", e.id.ID().String())
	}
	if e.refusal != nil {
		ev = ev.Str("refused", e.refusal.Error())
		var nm *workload.NoMatchError
		if errors.As(e.refusal, &nm) {
			p := nm.Process
			ev = ev.Int32("pid", p.PID).Uint32("uid", p.UID).Uint32("gid", p.GID).
				Str("exe", p.ExePath).Str("sha256", shortHash(p.ExeSHA256)).Strs("selectors", p.Selectors)
		}
		// Refused on its connect-time record, or not attested at all (it
		// exited or exec'd meanwhile): the record still names the program
		// that connected.
		var cr *workload.ConnectRecordError
		var pe *workload.PeerError
		switch {
		case errors.As(e.refusal, &cr):
			ev = connectedBy(ev, cr.PID, cr.Record)
		case nm == nil && errors.As(e.refusal, &pe):
			ev = connectedBy(ev, pe.PID, pe.Record)
		}
	}
	if e.route != nil {
		ev = ev.Str("route", e.route.Name).Str("upstream", e.route.Upstream)
	}
	if e.method != "" {
		ev = ev.Str("method", e.method)
	}
	if e.target != "" {
		ev = ev.Str("target", e.target)
	}
	decision := "deny"
	if e.decision != nil {
		decision = e.decision.Verdict()
		ev = ev.Str("rule", e.decision.Rule)
	}
	ev = ev.Str("decision", decision)
	if e.jwt != "" {
		ev = ev.Str("jwt_jti_sha256", e.jwt)
	}
	if e.status != 0 {
		ev = ev.Int("status", e.status)
	}
	ev = ev.Int64("bytes_up", e.up).Int64("bytes_down", e.down).
		Float64("duration_ms", float64(time.Since(e.start).Microseconds())/1000)
	if e.err != nil {
		ev = ev.Str("error", e.err.Error())
		var le *limitError
		if errors.As(e.err, &le) && le.key != "" {
			ev = ev.Str("limit", le.key)
		}
	}
	ev.Send()
}

// connectedBy adds the refused connection's SO_PEERCRED process and, when
// the kernel recorded its connect(), that record.
func connectedBy(ev *zerolog.Event, pid int32, rec connrecord.Record) *zerolog.Event {
	ev = ev.Int32("pid", pid)
	if rec.PID != 0 {
		ev = ev.Str("connect_record", rec.String())
	}
	return ev
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
