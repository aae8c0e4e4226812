//go:build !linux

package attest

// Fingerprint returns ErrUnsupported off Linux.
func (a *Attestor) Fingerprint(p *Peer) (Fingerprint, error) {
	return Fingerprint{}, ErrUnsupported
}

// Alive reports false off Linux: no process can be checked.
func (a *Attestor) Alive(fp Fingerprint) bool {
	return false
}
