//go:build !linux

package credread

import "errors"

var errUnsupported = errors.New("credread: per-write credentials need Linux")

// Reader is unavailable off Linux.
type Reader struct{}

// SetPassCred fails off Linux.
func SetPassCred(int) error { return errUnsupported }

// Read fails off Linux.
func (r *Reader) Read(int, []byte) (int, int32, error) { return 0, 0, errUnsupported }

// PeerCred fails off Linux.
func PeerCred(int) (int32, uint32, error) { return 0, 0, errUnsupported }
