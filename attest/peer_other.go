//go:build !linux

package attest

import "net"

// ReadPeer returns ErrUnsupported: peer credentials are read on Linux only.
func ReadPeer(c *net.UnixConn, usePIDFD bool) (*Peer, error) {
	return nil, ErrUnsupported
}

// Close does nothing: no pidfd is ever opened off Linux. It is idempotent.
func (p *Peer) Close() error {
	if p != nil {
		p.PIDFD = -1
	}
	return nil
}
