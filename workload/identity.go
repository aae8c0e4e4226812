package workload

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/registry"
)

// Identity is a process that matched a registration entry.
type Identity struct {
	// Process is the attested caller.
	Process *attest.Process
	// Entry is the registration entry that matched.
	Entry registry.Entry
}

// ID is the SPIFFE ID the process acts as.
func (id *Identity) ID() spiffeid.ID { return id.Entry.ID }

// NoMatchError is returned for a process that matches no registration entry
// (THREATS I7). Its message lists the selectors the process has, so an
// operator can write the entry it lacks, and, for a traced process or one
// running injected code (I17), the entries that match its selectors but do
// not allow that.
type NoMatchError struct {
	Process *attest.Process
	// Refused are the entries whose selectors the process has but which do
	// not allow its tracer or injected code (registry.Registry.Refusing).
	Refused []registry.Entry
	// Provider names the identity provider that issued nothing (a
	// Provider's Name), "" for procmesh's own registration entries;
	// Reason is what it said.
	Provider, Reason string
}

func (e *NoMatchError) Error() string {
	if e.Provider != "" {
		return fmt.Sprintf("workload: process %d (%s) has no identity: %s; its selectors as procmesh attests them are: %s",
			e.Process.PID, e.Process.ExePath, e.Reason, strings.Join(e.Process.Selectors, " "))
	}
	msg := fmt.Sprintf("workload: process %d (%s) matches no registration entry; its selectors are: %s",
		e.Process.PID, e.Process.ExePath, strings.Join(e.Process.Selectors, " "))
	if note := e.Process.HashNote(); note != "" {
		msg += " (" + note + ")"
	}
	if r := e.Reasons(); len(r) > 0 {
		msg += "; " + strings.Join(r, "; ")
	}
	return msg
}

// Reasons says, one line each, what about the process besides its
// selectors kept it from an entry: its tracer, its injected code, and the
// entries that refused it for that with the allow key that would accept
// it. Empty for a process with nothing to allow.
func (e *NoMatchError) Reasons() []string {
	p := e.Process
	var out []string
	if p.Traced {
		if p.TracerPID != 0 {
			out = append(out, fmt.Sprintf("it is traced by process %d", p.TracerPID))
		} else {
			out = append(out, "it was traced when it connected")
		}
	}
	for _, why := range p.InjectedCode {
		out = append(out, "it runs injected code: "+why)
	}
	has := Needs(p)
	for _, en := range e.Refused {
		var keys []string
		if has.Traced && !en.Allow.Traced {
			keys = append(keys, "allow.traced: true")
		}
		if has.InjectedCode && !en.Allow.InjectedCode {
			keys = append(keys, "allow.injected_code: true")
		}
		out = append(out, fmt.Sprintf("entry workloads[%d] (%s) has these selectors but does not allow this; "+
			"only if that is intended, set %s on it", en.Index, en.ID, strings.Join(keys, " and ")))
	}
	return out
}

// Needs is what p has that an entry must allow (THREATS I17).
func Needs(p *attest.Process) registry.Allow {
	return registry.Allow{Traced: p.Traced, InjectedCode: len(p.InjectedCode) > 0}
}
