package attest

import (
	"fmt"
	"strings"
)

// Fingerprint is a cheap, comparable identity of a running process image,
// used as the cache key by the workload package. It changes when the PID is
// reused (start time / pidfs inode) or the process execs another file (exe
// dev+inode) or its credentials differ.
type Fingerprint struct {
	PID            int32
	StartTime      uint64 // field 22 of /proc/PID/stat, parsed after the LAST ')'
	PIDFDIno       uint64 // pidfs inode when the pidfd lives on pidfs (statfs magic 0x50494446), else 0
	UID, GID       uint32 // effective ids now, equal to the Peer's (SO_PEERCRED at connect)
	ExeDev, ExeIno uint64 // stat("/proc/PID/exe")
}

// changes names the fields that differ between fp and now, for the error
// that refuses a peer which is no longer the fingerprinted process.
func (fp Fingerprint) changes(now Fingerprint) string {
	var diffs []string
	add := func(field string, was, is any) {
		diffs = append(diffs, fmt.Sprintf("%s %v -> %v", field, was, is))
	}
	if fp.PID != now.PID {
		add("pid", fp.PID, now.PID)
	}
	if fp.StartTime != now.StartTime {
		add("start time", fp.StartTime, now.StartTime)
	}
	if fp.PIDFDIno != now.PIDFDIno {
		add("pidfs inode", fp.PIDFDIno, now.PIDFDIno)
	}
	if fp.UID != now.UID || fp.GID != now.GID {
		add("uid:gid", fmt.Sprintf("%d:%d", fp.UID, fp.GID), fmt.Sprintf("%d:%d", now.UID, now.GID))
	}
	if fp.ExeDev != now.ExeDev || fp.ExeIno != now.ExeIno {
		add("exe dev:inode", fmt.Sprintf("%d:%d", fp.ExeDev, fp.ExeIno), fmt.Sprintf("%d:%d", now.ExeDev, now.ExeIno))
	}
	return strings.Join(diffs, ", ")
}
