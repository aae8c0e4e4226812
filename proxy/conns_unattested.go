package proxy

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Connections without an identity (THREATS F11). A connection is accepted
// before its process is attested, and a process that matches no entry
// never gets an identity; MaxConnectionsPerIdentity cannot bound such
// connections, and unregistered processes could hold every MaxConnections
// slot. Each uid (SO_PEERCRED, read at accept) has a bucket of
// MaxUnattestedConnectionsPerUID connections that have no identity yet; a
// connection leaves it when it is counted against its identity (admit).
// One refused for having no identity is closed after the answer, so it
// holds its slot no longer than its first request. A connection accepted
// while its uid's bucket is full is attested before it is served
// (shedUnattested): with an identity it is served as any other, without
// one it is told why and closed at once.

// unattestedBucket is the state of one connection in its uid's bucket.
// Its fields are set before the connection is shared.
type unattestedBucket struct {
	uid   uint32
	known bool // the uid was read
	over  bool // accepted while the uid's bucket was full: not counted
}

// openUnattested counts c in its uid's bucket at accept, or marks it over.
func (s *Server) openUnattested(c *clientConn, uid uint32) {
	c.bucket = unattestedBucket{uid: uid, known: true}
	if s.counts.openUnattested(uid, s.opts.MaxUnattestedConnectionsPerUID) {
		c.inBucket.Store(true)
	} else {
		c.bucket.over = true
	}
}

// leaveUnattested takes c out of its uid's bucket, once: it was counted
// against its identity, or it closed.
func (c *clientConn) leaveUnattested() {
	if c.inBucket.CompareAndSwap(true, false) {
		c.srv.counts.closeUnattested(c.bucket.uid)
	}
}

// shedUnattested waits for the attestation of a connection accepted over
// its uid's bucket. It returns false when the process has an identity (the
// connection is then served); otherwise it answers the connection's
// client with why, closes it and returns true.
func (s *Server) shedUnattested(cc *clientConn) bool {
	ci := cc.ident
	<-ci.done
	if ci.err == nil {
		return false
	}
	ev := &auditEvent{kind: "connection", start: time.Now(), refusal: ci.err}
	status, msg := refusalStatus(ci.err)
	lim := s.unattestedLimit(cc.bucket.uid)
	ev.status, ev.err = status, lim
	ev.write(&s.opts)
	// The answer is written before any request is read: whatever the
	// client sends, it is refused. An HTTP/1.1 client reads it as the
	// answer to its first request; the drain on Close lets it send that.
	bw := bufio.NewWriterSize(cc, 1024)
	writeFastError(bw, status, msg+"procmesh: "+lim.Error()+"\n")
	bw.Flush()
	cc.markDrainOnClose()
	cc.Close()
	return true
}

func (s *Server) unattestedLimit(uid uint32) *limitError {
	max := s.opts.MaxUnattestedConnectionsPerUID
	return &limitError{status: http.StatusServiceUnavailable,
		what: fmt.Sprintf("closed at once: uid %d already holds %d connections without an identity", uid, max),
		key:  keyMaxUnattestedPerUID, value: strconv.Itoa(max)}
}

// openUnattested counts a connection of uid without an identity unless
// max are open (max < 0: no limit).
func (cc *connCounts) openUnattested(uid uint32, max int) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if max >= 0 && cc.unattested[uid] >= max {
		return false
	}
	if cc.unattested == nil {
		cc.unattested = make(map[uint32]int)
	}
	cc.unattested[uid]++
	return true
}

func (cc *connCounts) closeUnattested(uid uint32) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.unattested[uid]--; cc.unattested[uid] <= 0 {
		delete(cc.unattested, uid)
	}
}
