//go:build !linux

package spire

import (
	"errors"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/internal/pidfd"
)

func pinProcess(attest.Fingerprint, func(attest.Fingerprint) bool) (*pidfd.Pin, error) {
	return nil, errors.New("spire: pinning a process by pidfd needs Linux")
}
