//go:build !linux

package connrecord

import "net"

// Recorder is unavailable off Linux.
type Recorder struct{}

// Open fails off Linux.
func Open(Options) (*Recorder, error) { return nil, ErrUnsupported }

// CgroupRoot is empty off Linux.
func (r *Recorder) CgroupRoot() string { return "" }

// Lookup fails off Linux.
func (r *Recorder) Lookup(*net.UnixConn) (Record, error) { return Record{}, ErrUnsupported }

// Close does nothing off Linux.
func (r *Recorder) Close() error { return nil }
