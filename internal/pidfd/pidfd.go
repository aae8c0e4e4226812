// Package pidfd holds a process by its pidfd: a file descriptor that names
// one process, whatever becomes of its PID, and that turns readable when
// the process exits. The descriptor is non-blocking, so it sits in Go's
// poller: waiting for the exit of a thousand processes parks a thousand
// goroutines, not threads.
//
// It leaves out how the pidfd is had (pidfd_open, SO_PEERPIDFD) and how
// the process is checked to be the one meant: its callers do both.
package pidfd

import "os"

// Pin is a pidfd of one process.
type Pin struct {
	f *os.File
}

// Exited reports whether the pinned process has exited (true too when the
// Pin is closed or unusable).
func (p *Pin) Exited() bool {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return true
	}
	gone := true
	if err := rc.Control(func(fd uintptr) { gone = readable(int(fd)) }); err != nil {
		return true
	}
	return gone
}

// Wait returns when the process exits or the Pin is closed.
func (p *Pin) Wait() {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool { return readable(int(fd)) })
}

// Close closes the pidfd, ending a Wait.
func (p *Pin) Close() error { return p.f.Close() }
