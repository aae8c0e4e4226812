//go:build !linux

package attest

// PeerFromPID is only supported on Linux.
func (a *Attestor) PeerFromPID(pid int32) (*Peer, error) { return nil, ErrUnsupported }
