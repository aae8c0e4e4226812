package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
)

// serveRaw handles one connection on a per-route socket: attest, authorise
// once for the connection, dial the route over mTLS, splice bytes.
func (s *Server) serveRaw(c *clientConn, routeName string) {
	ev := &auditEvent{kind: "connection", start: time.Now()}
	defer ev.write(&s.opts)
	defer c.Close()

	if c.overTotal {
		// Shed before attesting: under a flood, attestation is the cost.
		lim := c.admit(spiffeid.ID{})
		ev.err = lim
		ev.write(&s.opts)
		tellAndClose(c.UnixConn, lim.message())
		return
	}
	ctx, cancel := context.WithCancel(s.base)
	defer cancel()
	c.ident = s.startAttest(ctx, c.UnixConn)
	id, err := c.ident.wait(ctx, s.resolver)
	if err != nil {
		ev.refusal = err
		_, msg := refusalStatus(err)
		ev.write(&s.opts)
		tellAndClose(c.UnixConn, msg)
		return
	}
	ev.id = id
	if lim := c.admit(id.ID()); lim != nil {
		ev.err = lim
		ev.write(&s.opts)
		tellAndClose(c.UnixConn, lim.message())
		return
	}
	st := s.state.Load()
	route, ok := st.Route(routeName)
	if !ok {
		ev.err = fmt.Errorf("route %q no longer exists", routeName)
		return
	}
	ev.route = route
	req := policy.Request{Source: id.ID(), Selectors: id.Process.Selectors, Route: route.Name, Connection: true}
	dec := st.Policy.Decide(req)
	ev.decision = &dec
	if !dec.Allow {
		ev.write(&s.opts) // before the client hears of it
		tellAndClose(c.UnixConn, "procmesh: denied by policy: "+dec.Reason+"\n")
		return
	}
	up, err := s.upstreamFor(id, route).DialTunnel(ctx, s.bulk)
	if err != nil {
		ev.err = err
		return
	}
	defer s.track(&liveConn{end: c, id: id, req: req})()
	u, d, err := splice(s.bufs, s.bulk, c, up)
	ev.up, ev.down = u, d
	if err != nil && !errors.Is(err, net.ErrClosed) {
		ev.err = err
	}
}

// refusalDrain bounds how long a refused raw connection is read (and
// discarded) so the refusal text is not lost to a reset.
const (
	refusalDrainTime  = time.Second
	refusalDrainBytes = 64 << 10
)

// tellAndClose sends a refused raw-socket client the reason. The raw
// protocol has no error channel of its own, so a line of text followed by
// end-of-stream is the best a client can be told. Whatever the client
// already sent is read and dropped first, up to a bound: closing a Unix
// socket with unread data resets it and the client would see only the reset.
func tellAndClose(c *net.UnixConn, msg string) {
	c.SetDeadline(time.Now().Add(refusalDrainTime))
	c.Write([]byte(msg))
	c.CloseWrite()
	io.Copy(io.Discard, io.LimitReader(c, refusalDrainBytes))
}
