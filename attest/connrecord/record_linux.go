//go:build linux

package connrecord

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Recorder holds the attached program and its map of records. It is safe
// for concurrent use; Close detaches the program.
type Recorder struct {
	objs recorderObjects
	link link.Link
	diag *diagConns // procmesh's own network namespace
	// foreign are the pools of the other network namespaces connections
	// come from, and self is procmesh's (netns_linux.go).
	foreign netnsDiags
	self    netnsKey
	root    string

	// mu keeps Close from freeing the map while a Lookup uses its file
	// descriptor (a connection resolved during shutdown); closed refuses
	// Lookups after it.
	mu     sync.RWMutex
	closed bool
}

// Open loads the program, attaches it at the root of the cgroup v2
// hierarchy and checks, with a connection to itself, that a record is
// made and found. The error says which step failed.
func Open(opts Options) (*Recorder, error) {
	if opts.MaxRecords == 0 {
		opts.MaxRecords = DefaultMaxRecords
	}
	root := opts.CgroupRoot
	if root == "" {
		var err error
		if root, err = CgroupV2Root("/proc/self/mountinfo"); err != nil {
			return nil, err
		}
	}
	spec, err := loadRecorder()
	if err != nil {
		return nil, fmt.Errorf("connrecord: %w", err)
	}
	spec.Maps[recorderMapRecords].MaxEntries = opts.MaxRecords
	self, err := selfNetns()
	if err != nil {
		return nil, err
	}
	r := &Recorder{diag: newDiagConns(4, nil), self: self, root: root}
	if err := spec.LoadAndAssign(&r.objs, nil); err != nil {
		return nil, fmt.Errorf("connrecord: load the cgroup/connect_unix program (needs Linux 6.7+, CAP_BPF, kernel BTF): %w", err)
	}
	r.link, err = link.AttachCgroup(link.CgroupOptions{
		Path: root, Attach: ebpf.AttachCgroupUnixConnect, Program: r.objs.RecordConnect})
	if err != nil {
		r.objs.Close()
		return nil, fmt.Errorf("connrecord: attach cgroup/connect_unix at %s: %w", root, err)
	}
	if err := r.selfTest(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// CgroupRoot is the cgroup v2 directory the program is attached at.
func (r *Recorder) CgroupRoot() string { return r.root }

// Lookup returns the record of the connection c accepted, and removes it
// from the map: each connection is attested once.
func (r *Recorder) Lookup(c *net.UnixConn) (Record, error) {
	ino, nsfd, ns, nsErr, err := socketInode(c)
	if err != nil {
		return Record{}, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		unix.Close(nsfd)
		return Record{}, ErrClosed
	}
	diag := r.diag
	switch {
	case nsfd < 0: // namespace unknown: procmesh's own is asked
	case ns == r.self:
		unix.Close(nsfd)
	default:
		if diag, err = r.foreign.get(ns, nsfd); err != nil {
			return Record{}, err
		}
	}
	peer, err := diag.peerInode(ino)
	if err != nil {
		if nsErr != nil {
			err = fmt.Errorf("%w (asked in procmesh's network namespace: %v)", err, nsErr)
		}
		return Record{}, err
	}
	var v recorderRecord
	if err := r.objs.Records.LookupAndDelete(peer, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Record{}, ErrNoRecord
		}
		return Record{}, fmt.Errorf("connrecord: look up the record of socket %d: %w", peer, err)
	}
	return Record{
		PID:      int32(v.Tgid),
		ExeDev:   userDev(v.ExeDev),
		ExeIno:   v.ExeIno,
		Traced:   v.Ptrace != 0,
		CgroupID: v.Cgroup,
		At:       time.Duration(v.TimeNs),
	}, nil
}

// Close detaches the program and frees the map. It is idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.link != nil {
		err = r.link.Close()
		r.link = nil
	}
	r.diag.close()
	r.foreign.close()
	return errors.Join(err, r.objs.Close())
}

// userDev turns a kernel dev_t (major << 20 | minor) into the encoding
// stat(2) reports.
func userDev(kdev uint64) uint64 {
	return unix.Mkdev(uint32(kdev>>20), uint32(kdev&0xfffff))
}

// socketInode returns the inode of c's socket, and a descriptor and key
// of the network namespace it belongs to (the caller closes the
// descriptor): the connecting process's namespace. nsfd is -1 when the
// kernel does not say (SIOCGSKNS refused): the lookup then asks in
// procmesh's own namespace, which serves every client that shares it.
func socketInode(c *net.UnixConn) (ino uint64, nsfd int, ns netnsKey, nsErr, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, -1, netnsKey{}, nil, fmt.Errorf("connrecord: %w", err)
	}
	var st unix.Stat_t
	var serr error
	nsfd = -1
	if err := raw.Control(func(fd uintptr) {
		if serr = unix.Fstat(int(fd), &st); serr != nil {
			serr = fmt.Errorf("connrecord: fstat socket: %w", serr)
			return
		}
		if nfd, key, err := socketNetns(int(fd)); err == nil {
			nsfd, ns = nfd, key
		} else {
			nsErr = err
		}
	}); err != nil {
		return 0, -1, netnsKey{}, nil, fmt.Errorf("connrecord: %w", err)
	}
	if serr != nil {
		return 0, -1, netnsKey{}, nil, serr
	}
	return st.Ino, nsfd, ns, nsErr, nil
}

// selfTest connects to a socket of its own and checks the record names
// this process and its executable: the program runs, sock_diag answers,
// and the device encodings agree.
func (r *Recorder) selfTest() error {
	dir, err := os.MkdirTemp("", "procmesh-connrecord-")
	if err != nil {
		return fmt.Errorf("connrecord: self-test: %w", err)
	}
	defer os.RemoveAll(dir)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		return fmt.Errorf("connrecord: self-test: %w", err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		return fmt.Errorf("connrecord: self-test: %w", err)
	}
	defer c.Close()
	a, err := l.AcceptUnix()
	if err != nil {
		return fmt.Errorf("connrecord: self-test: %w", err)
	}
	defer a.Close()
	rec, err := r.Lookup(a)
	if err != nil {
		return fmt.Errorf("connrecord: self-test: the program attached at %s recorded nothing for a connect of procmesh's own (procmesh must run in the host's cgroup and PID namespaces): %w", r.root, err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return fmt.Errorf("connrecord: self-test: %w", err)
	}
	if rec.PID != int32(os.Getpid()) || rec.ExeDev != uint64(st.Dev) || rec.ExeIno != st.Ino {
		return fmt.Errorf("connrecord: self-test: the record (%v) does not name procmesh (pid %d, exe dev:inode %d:%d); is procmesh in a PID namespace of its own?",
			rec, os.Getpid(), uint64(st.Dev), st.Ino)
	}
	return nil
}

// CgroupV2Root finds the cgroup v2 mount in a mountinfo file: /sys/fs/cgroup
// on a unified host, /sys/fs/cgroup/unified in the hybrid layout.
func CgroupV2Root(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("connrecord: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 1 || tail[0] != "cgroup2" || fields[3] != "/" {
			continue
		}
		return unescapeMount(fields[4]), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("connrecord: read %s: %w", mountinfo, err)
	}
	return "", fmt.Errorf("connrecord: no cgroup v2 hierarchy is mounted (%s lists none); cgroup v1-only nodes get no connect-time record", mountinfo)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			if v, ok := octal3(s[i+1 : min(i+4, len(s))]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}
