package inbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/workload"
)

// Resolver attests the process a Peer names (*workload.Resolver).
type Resolver interface {
	ResolvePeer(ctx context.Context, peer *attest.Peer) (*workload.Identity, error)
}

var _ Resolver = (*workload.Resolver)(nil)

// ServiceError is why a service socket's serving process was refused
// (THREATS N3). Its message names the socket, the process and what to do.
type ServiceError struct {
	Service string
	PID     int32  // 0 when unknown
	Exe     string // "" when unknown
	Reason  string
	Err     error // the resolver's error, if any
}

func (e *ServiceError) Error() string {
	who := ""
	if e.PID != 0 {
		who = fmt.Sprintf(" (process %d", e.PID)
		if e.Exe != "" {
			who += " " + e.Exe
		}
		who += ")"
	}
	return fmt.Sprintf("inbound: service %s%s: %s", e.Service, who, e.Reason)
}

func (e *ServiceError) Unwrap() error { return e.Err }

// serving is an attested serving process.
type serving struct {
	pid int32
	exe string
	id  spiffeid.ID
}

// service dials and attests one Listener's service socket.
type service struct {
	path     string
	identity spiffeid.ID
	resolver Resolver
	pidfd    bool
	timeout  time.Duration
	ttl      time.Duration
	now      func() time.Time

	probe   sync.Mutex // held while probing
	mu      sync.Mutex // guards the verdict
	key     sockKey
	until   time.Time
	verdict error
}

// sockKey names a listening socket by its file: a new socket at the path
// (a restart, a rename over it) is a new key; the change time tells a new
// socket from an old one whose inode number was reused.
type sockKey struct {
	dev, ino uint64
	ctime    int64
}

func statSock(path string) (sockKey, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return sockKey{}, err
	}
	return sockKey{dev: uint64(st.Dev), ino: st.Ino, ctime: st.Ctim.Nano()}, nil
}

// check returns the cached verdict on the socket at the path, probing it
// (dial, attest, close) when the socket changed or the verdict is older
// than ttl. The TLS handshake asks it before presenting a certificate.
func (s *service) check(ctx context.Context) error {
	key, err := statSock(s.path)
	if err != nil {
		return &ServiceError{Service: s.path, Reason: "no socket: " + err.Error() + "; start the service", Err: err}
	}
	if v, ok := s.cached(key); ok {
		return v
	}
	// One probe at a time: handshakes that arrive meanwhile wait for its
	// verdict instead of each connecting to the service.
	s.probe.Lock()
	defer s.probe.Unlock()
	if v, ok := s.cached(key); ok {
		return v
	}
	now := s.now()
	c, _, err := s.dial(ctx)
	if c != nil {
		c.Close()
	}
	s.mu.Lock()
	s.key, s.until, s.verdict = key, now.Add(s.ttl), err
	s.mu.Unlock()
	return err
}

// cached returns the verdict on the socket key, if it is fresh.
func (s *service) cached(key sockKey) (error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == s.key && s.now().Before(s.until) {
		return s.verdict, true
	}
	return nil, false
}

// dial connects to the service and attests the process that created its
// listening socket. The connection is returned only when that process's
// identity is the listener's.
func (s *service) dial(ctx context.Context) (*net.UnixConn, *serving, error) {
	d := net.Dialer{Timeout: s.timeout}
	c, err := d.DialContext(ctx, "unix", s.path)
	if err != nil {
		return nil, nil, &ServiceError{Service: s.path, Reason: "connect: " + err.Error(), Err: err}
	}
	uc := c.(*net.UnixConn)
	sv, err := s.attest(ctx, uc)
	if err != nil {
		uc.Close()
		return nil, nil, err
	}
	return uc, sv, nil
}

// attest identifies the process SO_PEERCRED names on c: the one that
// called listen() on the service's socket.
func (s *service) attest(ctx context.Context, c *net.UnixConn) (*serving, error) {
	peer, err := attest.ReadPeer(c, s.pidfd)
	if err != nil {
		if errors.Is(err, attest.ErrPeerGone) {
			return nil, &ServiceError{Service: s.path, Err: err, Reason: "the process that created the listening socket has exited, " +
				"and another holds it (a socket handed over, a pre-fork server whose parent left): procmesh cannot tell which program serves it; " +
				"let the serving program create its own socket"}
		}
		return nil, &ServiceError{Service: s.path, Err: err, Reason: "read the serving process: " + err.Error()}
	}
	defer peer.Close()
	if peer.PID == 1 {
		return nil, &ServiceError{Service: s.path, PID: 1, Reason: "the listening socket was created by PID 1 (systemd socket activation, " +
			"or a supervisor running as init): procmesh cannot tell which program serves it; let the service create its own socket " +
			"(no .socket unit for it) and register that program"}
	}
	id, err := s.resolver.ResolvePeer(ctx, peer)
	if err != nil {
		var nm *workload.NoMatchError
		if errors.As(err, &nm) {
			return nil, &ServiceError{Service: s.path, PID: peer.PID, Exe: nm.Process.ExePath, Err: err,
				Reason: fmt.Sprintf("the serving process has no identity, so procmesh presents no certificate for %s: %v", s.identity, err)}
		}
		if errors.Is(err, attest.ErrPeerGone) {
			return nil, &ServiceError{Service: s.path, PID: peer.PID, Err: err, Reason: "the process that created the listening socket has exited; " +
				"procmesh cannot tell which program serves it; let the serving program create its own socket"}
		}
		return nil, &ServiceError{Service: s.path, PID: peer.PID, Err: err, Reason: "attest the serving process: " + err.Error()}
	}
	sv := &serving{pid: id.Process.PID, exe: id.Process.ExePath, id: id.ID()}
	if sv.id != s.identity {
		return nil, &ServiceError{Service: s.path, PID: sv.pid, Exe: sv.exe,
			Reason: fmt.Sprintf("served by a process whose identity is %s, not %s: another program serves the socket; procmesh presents no certificate for it", sv.id, s.identity)}
	}
	return sv, nil
}
