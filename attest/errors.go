package attest

import (
	"errors"
	"fmt"
)

// ErrPeerGone reports that the process which connected is no longer the
// process being read: it exited, its PID was reused, or it exec'd another
// file or changed credentials since it was fingerprinted (I2, I3). Callers
// refuse the connection; it is an expected outcome, not a fault.
var ErrPeerGone = errors.New("attest: the peer process is no longer the one that connected (it exited, exec'd another program or changed credentials)")

// ErrUnsupported is returned on systems other than Linux, where procmesh
// cannot attest processes.
var ErrUnsupported = errors.New("attest: process attestation is only supported on Linux")

// gone wraps ErrPeerGone with the PID and what showed the peer had gone;
// cause, when not nil, is wrapped too.
func gone(pid int32, what string, cause error) error {
	if cause == nil {
		return fmt.Errorf("%w: pid %d: %s", ErrPeerGone, pid, what)
	}
	return fmt.Errorf("%w: pid %d: %s: %w", ErrPeerGone, pid, what, cause)
}
