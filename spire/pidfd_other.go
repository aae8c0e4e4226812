//go:build !linux

package spire

import (
	"errors"

	"github.com/procmesh/procmesh/attest"
)

type pin struct{}

func pinProcess(attest.Fingerprint, func(attest.Fingerprint) bool) (*pin, error) {
	return nil, errors.New("spire: pinning a process by pidfd needs Linux")
}

func (p *pin) wait()        {}
func (p *pin) exited() bool { return true }
func (p *pin) close()       {}
