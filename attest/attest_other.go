//go:build !linux

package attest

// Attest returns ErrUnsupported off Linux.
func (a *Attestor) Attest(p *Peer, fp Fingerprint) (*Process, error) {
	return nil, ErrUnsupported
}

// AttestWith returns ErrUnsupported off Linux.
func (a *Attestor) AttestWith(p *Peer, fp Fingerprint, o AttestOptions) (*Process, error) {
	return nil, ErrUnsupported
}

// WithSHA256 returns ErrUnsupported off Linux.
func (a *Attestor) WithSHA256(p *Process) (*Process, error) {
	return nil, ErrUnsupported
}
