package wlapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/procmesh/procmesh/internal/pidfd"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/workload"
)

// transportCreds attests each connection at the gRPC handshake. It does no
// cryptography: the connection is a local Unix socket, and what it adds is
// who is on the other end.
type transportCreds struct{ s *Server }

var _ credentials.TransportCredentials = transportCreds{}

// ServerHandshake pins and attests the process that connected raw, and
// returns a connection whose reads refuse bytes any other process wrote.
// A process without an identity is refused on each RPC, with the reason,
// rather than here, unless its uid already holds MaxUnattestedPerUID such
// connections.
func (c transportCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := raw.(*net.UnixConn)
	if !ok {
		return nil, nil, errors.New("wlapi: not a Unix socket connection; the Workload API is served on a Unix socket only")
	}
	pc, err := newPeerConn(uc)
	if err != nil {
		return nil, nil, err
	}
	cs := &connState{srv: c.s, conn: pc, gone: make(chan struct{})}
	pc.onForeign = func(fw *ForeignWriterError) {
		c.s.audit(&rpcRecord{rpc: "connection", conn: cs, refusal: fw}, status.Error(codes.PermissionDenied, fw.Error()))
	}
	cs.SecurityLevel = credentials.PrivacyAndIntegrity // a local socket; see AuthType
	cs.err = c.s.attest(cs, uc)
	if transient(cs.err) {
		// Passes by itself: the client's retry, on a new connection, is
		// attested anew (this one would stay refused for its life).
		c.s.audit(&rpcRecord{rpc: "connection", conn: cs, refusal: cs.err}, status.Error(codes.Unavailable, cs.err.Error()))
		cs.close()
		return nil, nil, cs.err
	}
	if cs.err == nil {
		cs.cur, cs.gen = cs.id, c.s.opts.Resolver.Generation()
	} else if !c.s.openUnattested(pc.uid) {
		c.s.audit(&rpcRecord{rpc: "connection", conn: cs, refusal: cs.err}, status.Errorf(codes.ResourceExhausted,
			"wlapi: closed at once: uid %d already holds %d connections without an identity (%v)", pc.uid, c.s.opts.MaxUnattestedPerUID, cs.err))
		cs.close()
		return nil, nil, fmt.Errorf("wlapi: too many connections without an identity from uid %d", pc.uid)
	} else {
		cs.unattested = true
	}
	return &servedConn{peerConn: pc, cs: cs}, cs, nil
}

func (transportCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("wlapi: server-side credentials only")
}

func (transportCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: authType}
}

func (c transportCreds) Clone() credentials.TransportCredentials { return c }

func (transportCreds) OverrideServerName(string) error { return nil }

const authType = "procmesh-unix-peer"

// servedConn releases the connection's state when gRPC closes it.
type servedConn struct {
	*peerConn
	cs   *connState
	once sync.Once
}

func (c *servedConn) Close() error {
	err := c.peerConn.Close()
	c.once.Do(c.cs.close)
	return err
}

// connState is one connection's attestation, the gRPC AuthInfo of its
// RPCs.
type connState struct {
	credentials.CommonAuthInfo
	srv  *Server
	conn *peerConn
	pin  *pidfd.Pin    // nil when it could not be had (err says why)
	gone chan struct{} // closed when the process exits

	// id is the attestation at the handshake; err why there is none.
	id         *workload.Identity
	err        error
	unattested bool // counted in its uid's bucket of connections without an identity

	mu     sync.Mutex
	gen    *registry.Registry // entries cur was matched against
	cur    *workload.Identity
	curErr error
}

func (*connState) AuthType() string { return authType }

func (cs *connState) close() {
	if cs.pin != nil {
		cs.pin.Close()
	}
	if cs.unattested {
		cs.srv.closeUnattested(cs.conn.uid)
	}
}

// pid is the process that connected.
func (cs *connState) pid() int32 { return cs.conn.pid }

// identity is the connection's process's identity under the registration
// entries (or the provider's answer) in force now.
func (cs *connState) identity(ctx context.Context) (*workload.Identity, error) {
	r := cs.srv.opts.Resolver
	if cs.err != nil {
		return cs.again(ctx)
	}
	gen := r.Generation()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.gen != gen || r.ProviderDecides() {
		base := cs.cur
		if base == nil {
			base = cs.id
		}
		id, err := r.Rematch(base)
		cs.gen = gen
		if err == nil {
			cs.cur, cs.curErr = id, nil
		} else {
			cs.curErr = err
		}
	}
	return cs.cur, cs.curErr
}

// again asks again, by PID, for a connection whose process had no
// identity at the handshake because no entry matched it: an entry added
// since (a reload, or SPIRE) is then found without a new connection. The
// process must still be the one attested at the handshake (its
// fingerprint: no exec, no PID reuse), whose connect-time record was
// checked then. Every other refusal (the connect-time record, a process
// that exited, traced or running injected code) stands for the
// connection's life.
func (cs *connState) again(ctx context.Context) (*workload.Identity, error) {
	var nm *workload.NoMatchError
	if !errors.As(cs.err, &nm) || nm.Process.Traced || len(nm.Process.InjectedCode) > 0 || cs.pin == nil {
		return nil, cs.err
	}
	id, err := cs.srv.opts.Resolver.ResolvePID(ctx, cs.pid())
	if err != nil {
		return nil, err
	}
	if id.Process.Fingerprint != nm.Process.Fingerprint || id.Process.Traced || len(id.Process.InjectedCode) > 0 {
		return nil, cs.err
	}
	return id, nil
}

// attest pins the process that connected uc and attests it; the error
// says why it has no identity.
func (s *Server) attest(cs *connState, uc *net.UnixConn) error {
	var err error
	if cs.pin, err = pinPeer(uc); err != nil {
		close(cs.gone)
		return err
	}
	go func() { cs.pin.Wait(); close(cs.gone) }()
	ctx, cancel := context.WithTimeoutCause(s.ctx, s.opts.AttestTimeout, errAttestTimeout)
	defer cancel()
	cs.id, err = s.opts.Resolver.Resolve(ctx, uc)
	switch {
	case err != nil && context.Cause(ctx) == errAttestTimeout:
		return fmt.Errorf("%w (%v)", errAttestTimeout, err)
	case err != nil:
		return err
	case cs.pin.Exited():
		return fmt.Errorf("wlapi: process %d exited while it was attested", cs.pid())
	case !s.opts.Alive(cs.id.Process.Fingerprint):
		// pidfd_open's pidfd (kernels without SO_PEERPIDFD) was opened
		// after the attestation: its PID may have been reused since.
		return fmt.Errorf("wlapi: process %d exited or changed while it was attested", cs.pid())
	}
	return nil
}
