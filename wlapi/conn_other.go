//go:build !linux

package wlapi

import (
	"errors"
	"net"
	"sync/atomic"

	"github.com/procmesh/procmesh/internal/pidfd"
)

var errLinuxOnly = errors.New("wlapi: the Workload API attests callers with Linux facilities (SO_PEERCRED, SO_PASSCRED, pidfd)")

type peerConn struct {
	*net.UnixConn
	pid     int32
	uid     uint32
	foreign atomic.Pointer[ForeignWriterError]

	onForeign func(*ForeignWriterError)
}

func newPeerConn(*net.UnixConn) (*peerConn, error) { return nil, errLinuxOnly }

func (c *peerConn) ForeignWriter() *ForeignWriterError { return c.foreign.Load() }

func pinPeer(*net.UnixConn) (*pidfd.Pin, error) { return nil, errLinuxOnly }

func setPassCred(net.Listener) error { return errLinuxOnly }
