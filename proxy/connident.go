package proxy

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/workload"
)

// connIdentity is the attestation of one client connection. It starts when
// the connection is accepted, so the window between connect() and reading
// /proc is as short as the accept loop allows, and it is fixed for the
// connection's life: every request on it acts as the same process. The
// process's entry is re-checked whenever the registration entries change
// (a reload), so a removed or renamed identity takes effect on live
// keep-alive connections too (THREATS F6).
type connIdentity struct {
	done chan struct{}
	id   *workload.Identity
	err  error

	mu     sync.Mutex
	gen    *registry.Registry // entries cur was matched against
	cur    *workload.Identity
	curErr error
}

type connIdentityKey struct{}

// startAttest starts attesting the peer of c in the background.
func (s *Server) startAttest(ctx context.Context, c net.Conn) *connIdentity {
	ci := &connIdentity{done: make(chan struct{})}
	uconn, ok := c.(*net.UnixConn)
	if !ok {
		ci.err = errors.New("proxy: not a Unix socket connection; procmesh serves applications over Unix sockets only")
		close(ci.done)
		return ci
	}
	go func() {
		defer close(ci.done)
		ci.id, ci.err = s.resolver.Resolve(ctx, uconn)
	}()
	return ci
}

// identityOf waits for the attestation of the request's connection and
// returns its identity under the registration entries in force now.
func (s *Server) identityOf(ctx context.Context) (*workload.Identity, error) {
	ci, ok := ctx.Value(connIdentityKey{}).(*connIdentity)
	if !ok {
		return nil, errors.New("proxy: connection was not attested")
	}
	return ci.wait(ctx, s.resolver)
}

// wait is the one way every path gets a connection's identity: it waits
// for the attestation started at accept (the connect-time record and
// /proc, in Resolver.Resolve) or for ctx, and returns the identity under
// the registration entries in force now.
func (ci *connIdentity) wait(ctx context.Context, r Resolver) (*workload.Identity, error) {
	select {
	case <-ci.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if ci.err != nil {
		return nil, ci.err
	}
	return ci.current(r)
}

// current re-matches the connection's process when the entries changed
// since it was last matched; it costs one pointer compare otherwise.
func (ci *connIdentity) current(r Resolver) (*workload.Identity, error) {
	if ci.err != nil {
		return nil, ci.err
	}
	gen := r.Generation()
	ci.mu.Lock()
	defer ci.mu.Unlock()
	if ci.gen != gen {
		ci.cur, ci.curErr = r.Rematch(ci.id)
		ci.gen = gen
	}
	return ci.cur, ci.curErr
}
