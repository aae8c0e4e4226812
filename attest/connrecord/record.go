package connrecord

import (
	"errors"
	"fmt"
	"time"
)

// Record is what the kernel knew of the connecting task at connect(2).
type Record struct {
	// PID is the connecting process (thread group id) in the initial PID
	// namespace.
	PID int32
	// ExeDev and ExeIno name the executable the process ran at connect():
	// ExeDev in the encoding stat(2) reports (st_dev), so they compare with
	// a stat of /proc/PID/exe. Both are 0 for a task without an mm.
	ExeDev, ExeIno uint64
	// Traced reports that the connecting thread, or its process's main
	// thread, was being ptraced at connect(): a
	// tracer that injected the connect() and detached before attestation
	// is visible only here.
	Traced bool
	// CgroupID is the task's cgroup v2 id.
	CgroupID uint64
	// At is when connect() ran, on the CLOCK_MONOTONIC clock.
	At time.Duration
}

// ErrNoRecord is returned by Lookup for a connection the program did not
// see connect: made before the program was attached, by a task outside
// the cgroup hierarchy it covers, or whose record was evicted.
var ErrNoRecord = errors.New("connrecord: no connect-time record for this connection")

// ErrClosed is returned by Lookup once the Recorder is closed (procmesh is
// stopping): the connection is refused, never attested without its record.
var ErrClosed = errors.New("connrecord: the connect-time recorder is closed (procmesh is stopping)")

// ErrUnsupported is returned by Open where no record can be had at all.
var ErrUnsupported = errors.New("connrecord: connect-time records need Linux 6.7+ (BPF_CGROUP_UNIX_CONNECT)")

// Options configure a Recorder.
type Options struct {
	// MaxRecords bounds the LRU map of records. Every Unix-socket connect
	// on the node takes a slot until procmesh consumes it or it is
	// evicted, so this bounds how many connects may happen between a
	// client's connect() and procmesh's accept. Default 65536 (about 6 MiB
	// of kernel memory).
	MaxRecords uint32
	// CgroupRoot is the cgroup v2 mount to attach at. Default: found in
	// /proc/self/mountinfo.
	CgroupRoot string
}

// DefaultMaxRecords is the default of Options.MaxRecords.
const DefaultMaxRecords = 65536

// String describes r for logs and refusals.
func (r Record) String() string {
	return fmt.Sprintf("pid %d, exe dev:inode %d:%d, traced %t", r.PID, r.ExeDev, r.ExeIno, r.Traced)
}
