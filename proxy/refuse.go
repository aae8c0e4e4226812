package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/workload"
)

// refusalStatus maps why a caller has no identity to an HTTP status and a
// message that tells the caller what to do.
func refusalStatus(err error) (int, string) {
	var nm *workload.NoMatchError
	var cr *workload.ConnectRecordError
	switch {
	case errors.As(err, &cr):
		return http.StatusForbidden, fmt.Sprintf("procmesh: refused: process %d: %s.\n", cr.PID, cr.Reason)
	case errors.As(err, &nm) && nm.Provider != "":
		p := nm.Process
		var b strings.Builder
		fmt.Fprintf(&b, "procmesh: refused: process %d (%s) has no identity: %s.\n", p.PID, p.ExePath, nm.Reason)
		b.WriteString("Its selectors, as procmesh's own attestation shows them (SPIRE's unix attestor sees the unix: ones alike), are:\n")
		for _, sel := range p.Selectors {
			fmt.Fprintf(&b, "  %s\n", sel)
		}
		b.WriteString("Ask the node operator for a SPIRE registration entry (spire-server entry create) whose selectors are all among these.\n")
		return http.StatusForbidden, b.String()
	case errors.As(err, &nm):
		p := nm.Process
		var b strings.Builder
		fmt.Fprintf(&b, "procmesh: refused: process %d (%s) matches no registration entry.\n", p.PID, p.ExePath)
		b.WriteString("Its selectors are:\n")
		for _, sel := range p.Selectors {
			fmt.Fprintf(&b, "  %s\n", sel)
		}
		for _, r := range nm.Reasons() {
			fmt.Fprintf(&b, "Also: %s.\n", r)
		}
		b.WriteString("Ask the node operator for a workloads entry whose selectors are all among these.\n")
		return http.StatusForbidden, b.String()
	case errors.Is(err, attest.ErrPeerGone):
		return http.StatusForbidden, "procmesh: refused: the connecting process exited or changed before it could be attested\n"
	default:
		return http.StatusServiceUnavailable, fmt.Sprintf("procmesh: no identity for this process: %v\n", err)
	}
}

// errorFields are the header fields of every error procmesh answers, on
// the net/http path (writeError) and the fast path (writeFastError).
var errorFields = [...][2]string{
	{"Content-Type", "text/plain; charset=utf-8"},
	{"X-Content-Type-Options", "nosniff"},
	{"Proxy-Status", "procmesh"},
}

// writeError answers with a plain-text error.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	for _, f := range errorFields {
		h.Set(f[0], f[1])
	}
	w.WriteHeader(status)
	fmt.Fprint(w, msg)
}

// writeClosing answers with a plain-text error and closes the connection
// after it: HTTP/1.1 "Connection: close", an HTTP/2 GOAWAY.
func writeClosing(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Connection", "close")
	writeError(w, status, msg)
}
