//go:build linux

package connrecord

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A connection's server end lives in the network namespace of the process
// that connected, not in procmesh's: the kernel creates it in connect()
// (unix_stream_connect) with the connecting socket's namespace. sock_diag
// finds a socket only in the namespace of the netlink socket asking, so
// the peer of a connection from a container with a network namespace of
// its own (every Kubernetes pod) is looked up from inside that namespace.

// netnsKey names a network namespace by its nsfs inode.
type netnsKey struct{ dev, ino uint64 }

func netnsOf(fd int) (netnsKey, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return netnsKey{}, err
	}
	return netnsKey{uint64(st.Dev), st.Ino}, nil
}

// selfNetns is the network namespace procmesh runs in.
func selfNetns() (netnsKey, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return netnsKey{}, fmt.Errorf("connrecord: %w", err)
	}
	return netnsKey{uint64(st.Dev), st.Ino}, nil
}

// socketNetns returns a descriptor of the network namespace socket fd
// belongs to (SIOCGSKNS, CAP_NET_ADMIN) and its key.
func socketNetns(fd int) (int, netnsKey, error) {
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return -1, netnsKey{}, fmt.Errorf("connrecord: ioctl SIOCGSKNS (the connection's network namespace): %w", err)
	}
	key, err := netnsOf(nsfd)
	if err != nil {
		unix.Close(nsfd)
		return -1, netnsKey{}, fmt.Errorf("connrecord: fstat network namespace: %w", err)
	}
	return nsfd, key, nil
}

// openDiagIn opens a NETLINK_SOCK_DIAG socket in the network namespace
// nsfd names. A socket belongs to the namespace of the thread that
// creates it; the thread that enters the namespace is locked to its
// goroutine and never unlocked, so it ends with the goroutine and no other
// goroutine ever runs in that namespace.
func openDiagIn(nsfd int) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("connrecord: setns into the connecting process's network namespace (needs CAP_SYS_ADMIN; without it, clients in a network namespace of their own are refused while the connect-time record is on): %w", err)}
			return
		}
		fd, err := openDiag()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// Bounds of the foreign namespaces' cache: each entry holds its
// namespace open, so a pod's namespace outlives the pod by at most
// netnsIdle, and at most netnsMax are held.
const (
	netnsMax  = 64
	netnsIdle = time.Minute
)

// netnsDiags keeps a sock_diag pool per foreign network namespace.
type netnsDiags struct {
	mu     sync.Mutex
	m      map[netnsKey]*nsDiag
	closed bool
}

type nsDiag struct {
	conns *diagConns
	used  time.Time // under netnsDiags.mu

	mu      sync.Mutex // guards nsfd against its close by drop
	nsfd    int
	dropped bool
}

// open opens a sock_diag socket in the namespace, unless it was dropped.
func (d *nsDiag) open() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dropped {
		return -1, ErrClosed
	}
	return openDiagIn(d.nsfd)
}

// get returns the pool of namespace key, whose descriptor nsfd it takes
// over (kept for a new pool, closed otherwise).
func (n *netnsDiags) get(key netnsKey, nsfd int) (*diagConns, error) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		unix.Close(nsfd)
		return nil, ErrClosed
	}
	if d, ok := n.m[key]; ok {
		unix.Close(nsfd)
		d.used = now
		return d.conns, nil
	}
	if n.m == nil {
		n.m = map[netnsKey]*nsDiag{}
	}
	n.evict(now)
	d := &nsDiag{nsfd: nsfd, used: now}
	d.conns = newDiagConns(2, d.open)
	n.m[key] = d
	return d.conns, nil
}

// evict drops the namespaces idle for netnsIdle, and the least recently
// used while netnsMax are held. n.mu is held.
func (n *netnsDiags) evict(now time.Time) {
	for k, d := range n.m {
		if now.Sub(d.used) > netnsIdle {
			n.drop(k, d)
		}
	}
	for len(n.m) >= netnsMax {
		var oldest netnsKey
		var od *nsDiag
		for k, d := range n.m {
			if od == nil || d.used.Before(od.used) {
				oldest, od = k, d
			}
		}
		n.drop(oldest, od)
	}
}

// drop closes a namespace's sockets and descriptor. A lookup still using
// one of its sockets closes it when done (diagConns.close).
func (n *netnsDiags) drop(k netnsKey, d *nsDiag) {
	delete(n.m, k)
	d.conns.close()
	d.mu.Lock()
	d.dropped = true
	unix.Close(d.nsfd)
	d.mu.Unlock()
}

func (n *netnsDiags) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for k, d := range n.m {
		n.drop(k, d)
	}
}
