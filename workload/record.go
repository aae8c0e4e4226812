package workload

import (
	"errors"
	"fmt"
	"net"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
)

// ConnectRecordError refuses a connection whose connect-time record does
// not describe the process procmesh attests (THREATS I11): the process
// ran another program at connect() than it runs now, another process
// made the connect, the record is missing, or the connecting task was
// being traced.
type ConnectRecordError struct {
	PID    int32  // the SO_PEERCRED process
	Reason string // what the record says, for the caller and the audit line
	// Record is the kernel's record; zero when there was none.
	Record connrecord.Record
}

func (e *ConnectRecordError) Error() string {
	return fmt.Sprintf("workload: process %d refused: %s", e.PID, e.Reason)
}

// PeerError refuses a connection whose process could not be attested after
// its connect-time record was read: it exited or exec'd while procmesh read
// /proc, or its uid attests too fast. It names the SO_PEERCRED process and,
// when the kernel recorded the connect(), the program that called it, so
// that the audit line says who tried even when the process is gone.
type PeerError struct {
	PID int32
	// Record is the kernel's record; zero when records are off.
	Record connrecord.Record
	Err    error
}

func (e *PeerError) Error() string { return e.Err.Error() }
func (e *PeerError) Unwrap() error { return e.Err }

// peerError wraps err, a failure to attest peer after its record rec
// (nil when records are off) was read.
func peerError(peer *attest.Peer, rec *connrecord.Record, err error) error {
	e := &PeerError{PID: peer.PID, Err: err}
	if rec != nil {
		e.Record = *rec
	}
	return e
}

// record looks up conn's connect-time record, if records are kept, and
// checks it was made by the process SO_PEERCRED names.
func (r *Resolver) record(conn *net.UnixConn, peer *attest.Peer) (*connrecord.Record, error) {
	if r.opts.Records == nil {
		return nil, nil
	}
	rec, err := r.opts.Records.Lookup(conn)
	if err != nil {
		reason := "the kernel made no connect-time record of its connection, so which program connected cannot be known " +
			"(connect-time records are on: a connection made before procmesh started, or from outside the cgroup hierarchy, is refused)"
		if !errors.Is(err, connrecord.ErrNoRecord) {
			reason = fmt.Sprintf("its connect-time record could not be read: %v", err)
		}
		return nil, &ConnectRecordError{PID: peer.PID, Reason: reason}
	}
	if rec.PID != peer.PID {
		return nil, &ConnectRecordError{PID: peer.PID, Record: rec, Reason: fmt.Sprintf(
			"the kernel recorded process %d calling connect(), not process %d", rec.PID, peer.PID)}
	}
	return &rec, nil
}

// checkRecord refuses a process that runs another executable than the one
// it ran at connect(): it, or a process it shares the socket with, exec'd
// after connecting.
func checkRecord(rec *connrecord.Record, fp attest.Fingerprint) error {
	if rec == nil || (rec.ExeDev == fp.ExeDev && rec.ExeIno == fp.ExeIno) {
		return nil
	}
	return &ConnectRecordError{PID: fp.PID, Record: *rec, Reason: fmt.Sprintf(
		"it ran another program when it called connect() (exe dev:inode %d:%d) than it runs now (%d:%d): "+
			"a process that execs after connecting does not get the identity of what it exec'd",
		rec.ExeDev, rec.ExeIno, fp.ExeDev, fp.ExeIno)}
}

// tracedAtConnect re-matches a cached attestation for a connection whose
// task was being traced when it called connect() (THREATS I17): a tracer
// that injected the connect() and detached before attestation left no
// TracerPid in /proc, only this record. The process then counts as traced
// for this connection, and only an entry with allow.traced takes it.
func (r *Resolver) tracedAtConnect(c *cached) *cached {
	p := *c.proc
	p.Traced = true
	t := &cached{proc: &p, reg: c.reg, expires: c.expires}
	t.entry, t.matched = c.reg.MatchProcess(p.Selectors, Needs(&p))
	return t
}
