//go:build !linux

package attest

// Attest returns ErrUnsupported off Linux.
func (a *Attestor) Attest(p *Peer, fp Fingerprint) (*Process, error) {
	return nil, ErrUnsupported
}
