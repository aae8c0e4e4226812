//go:build !linux

package pidfd

import "errors"

// New fails: pidfds are Linux's.
func New(fd int, pid int32) (*Pin, error) { return nil, errors.New("pidfd: Linux only") }

func readable(int) bool { return true }
