//go:build !linux

package wlapi

import (
	"errors"
	"net"
	"sync/atomic"
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

type pin struct{}

func pinPeer(*net.UnixConn) (*pin, error) { return nil, errLinuxOnly }
func (p *pin) wait()                      {}
func (p *pin) exited() bool               { return true }
func (p *pin) close()                     {}

func setPassCred(net.Listener) error { return errLinuxOnly }
