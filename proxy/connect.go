package proxy

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/workload"
)

// tunnel answers CONNECT: it dials the route over mTLS with the workload's
// SVID first, and only when that works tells the client 200 and splices the
// client's plaintext into the TLS connection.
func (s *Server) tunnel(w http.ResponseWriter, r *http.Request, id *workload.Identity, route *Route, req policy.Request, ev *auditEvent) {
	up, err := s.upstreamFor(id, route).DialTunnel(r.Context(), s.bulk)
	if err != nil {
		ev.err, ev.status = err, http.StatusBadGateway
		writeError(w, ev.status, fmt.Sprintf("procmesh: route %q: %v\n", route.Name, err))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		ev.err, ev.status = fmt.Errorf("hijack client connection: %w", err), http.StatusInternalServerError
		writeError(w, ev.status, "procmesh: cannot take over this connection for CONNECT\n")
		return
	}
	// The hijack registered the connection with s.conns (connState), so
	// that shutdown drains the tunnel; closing it releases that.
	cc, ok := conn.(*clientConn)
	if !ok || cc.closed.Load() {
		conn.Close()
		up.Close()
		ev.err = errors.New("proxy is shutting down")
		return
	}
	defer cc.Close()
	defer s.track(&liveConn{end: cc, id: id, req: req})()
	ev.status = http.StatusOK
	_, err = brw.WriteString("HTTP/1.1 200 Connection Established\r\n\r\n")
	if err == nil {
		err = brw.Flush()
	}
	if err != nil {
		cc.Close()
		up.Close()
		ev.err = fmt.Errorf("upstream to client: write 200 Connection Established: %w", err)
		return
	}
	// Bytes the client pipelined behind the CONNECT request are already in
	// the server's buffer: send them first.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			cc.Close()
			up.Close()
			ev.err = fmt.Errorf("client to upstream: %w", err)
			return
		}
		ev.up += int64(n)
	}
	u, d, err := splice(s.bufs, s.bulk, cc, up)
	ev.up += u
	ev.down += d
	ev.err = err
	if cc.idleFired.Load() {
		lim := s.opts.StreamIdleTimeout
		ev.err = streamIdleError(0, "in the tunnel", lim)
	}
}
