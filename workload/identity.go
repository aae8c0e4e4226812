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
// operator can write the entry it lacks.
type NoMatchError struct {
	Process *attest.Process
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
	return fmt.Sprintf("workload: process %d (%s) matches no registration entry; its selectors are: %s",
		e.Process.PID, e.Process.ExePath, strings.Join(e.Process.Selectors, " "))
}
