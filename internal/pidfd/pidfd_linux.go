//go:build linux

package pidfd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// New takes fd, a pidfd of process pid, made non-blocking here; the Pin
// owns it from then on, and closes it when that fails.
func New(fd int, pid int32) (*Pin, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pidfd of process %d: %w", pid, err)
	}
	return &Pin{f: os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))}, nil
}

// readable reports whether the pidfd is readable: its process has exited.
func readable(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}
