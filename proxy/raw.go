package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/procmesh/procmesh/policy"
)

// serveRaw handles one connection on a per-route socket: attest, authorise
// once for the connection, dial the route over mTLS, splice bytes.
func (s *Server) serveRaw(c *net.UnixConn, routeName string) {
	ev := &auditEvent{kind: "connection", start: time.Now()}
	defer ev.write(&s.opts.Audit)
	defer c.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id, err := s.opts.Resolver.Resolve(ctx, c)
	if err != nil {
		ev.refusal = err
		_, msg := refusalStatus(err)
		tellAndClose(c, msg)
		return
	}
	ev.id = id
	st := s.state.Load()
	route, ok := st.Route(routeName)
	if !ok {
		ev.err = fmt.Errorf("route %q no longer exists", routeName)
		return
	}
	ev.route = route
	dec := st.Policy.Decide(policy.Request{Source: id.ID(), Route: route.Name})
	ev.decision = &dec
	if !dec.Allow {
		tellAndClose(c, "procmesh: denied by policy: "+dec.Reason+"\n")
		return
	}
	up, err := s.pools.get(id, route).dialTLS(ctx)
	if err != nil {
		ev.err = err
		return
	}
	u, d, err := splice(c, up)
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
