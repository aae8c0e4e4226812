//go:build linux

package connrecord

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Recorder holds the attached program and its map of records. It is safe
// for concurrent use; Close detaches the program.
type Recorder struct {
	objs   recorderObjects
	link   link.Link // cgroup/connect_unix: makes the records
	answer link.Link // cgroup/getsockname_unix: hands them to Lookup
	root   string

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
	// The answers go to this process's getpeername calls only; its tgid
	// is the kernel's (procmesh runs in the initial PID namespace, which
	// selfTest checks).
	if err := spec.Variables[recorderVarProcmeshTgid].Set(uint32(os.Getpid())); err != nil {
		return nil, fmt.Errorf("connrecord: %w", err)
	}
	r := &Recorder{root: root}
	if err := spec.LoadAndAssign(&r.objs, nil); err != nil {
		return nil, fmt.Errorf("connrecord: load the cgroup/connect_unix and getsockname_unix programs (needs Linux 6.7+, CAP_BPF, kernel BTF): %w", err)
	}
	r.link, err = link.AttachCgroup(link.CgroupOptions{
		Path: root, Attach: ebpf.AttachCgroupUnixConnect, Program: r.objs.RecordConnect})
	if err != nil {
		r.objs.Close()
		return nil, fmt.Errorf("connrecord: attach cgroup/connect_unix at %s: %w", root, err)
	}
	r.answer, err = link.AttachCgroup(link.CgroupOptions{
		Path: root, Attach: ebpf.AttachCgroupUnixGetsockname, Program: r.objs.AnswerGetsockname})
	if err != nil {
		r.link.Close()
		r.objs.Close()
		return nil, fmt.Errorf("connrecord: attach cgroup/getsockname_unix at %s: %w", root, err)
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
// from the map: each connection is attested once. It asks getsockname(2),
// which the attached program answers, for procmesh's own connected
// sockets, with the record of the peer, the socket that called connect()
// (record.c): no walk of the namespace's sockets, whatever network
// namespace the client is in.
func (r *Recorder) Lookup(c *net.UnixConn) (Record, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Record{}, fmt.Errorf("connrecord: %w", err)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return Record{}, ErrClosed
	}
	var a recorderAnswer
	var found bool
	var aerr error
	if err := raw.Control(func(fd uintptr) { a, found, aerr = localAnswer(int(fd)) }); err != nil {
		return Record{}, fmt.Errorf("connrecord: %w", err)
	}
	if aerr != nil {
		return Record{}, aerr
	}
	if !found {
		return Record{}, ErrNoRecord
	}
	// Consumed: a second Lookup of the connection finds nothing.
	if err := r.objs.Records.Delete(a.Ino); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Record{}, ErrNoRecord
		}
		return Record{}, fmt.Errorf("connrecord: delete the record of socket %d: %w", a.Ino, err)
	}
	v := a.R
	return Record{
		PID:      int32(v.Tgid),
		ExeDev:   userDev(v.ExeDev),
		ExeIno:   v.ExeIno,
		Traced:   v.Ptrace != 0,
		CgroupID: v.Cgroup,
		At:       time.Duration(v.TimeNs),
	}, nil
}

// localAnswer reads getsockname on fd: the program's answer when it wrote
// one (found), else the socket's own address (the listener's path: no
// record of the peer).
func localAnswer(fd int) (a recorderAnswer, found bool, err error) {
	var sa unix.RawSockaddrUnix
	l := uint32(unsafe.Sizeof(sa))
	_, _, errno := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l)))
	if errno != 0 {
		return a, false, fmt.Errorf("connrecord: getsockname: %w", errno)
	}
	n, off := int(unsafe.Sizeof(a)), int(unsafe.Offsetof(sa.Path))
	if sa.Family != unix.AF_UNIX || int(l) != off+n || sa.Path[0] != 0 {
		return a, false, nil
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&sa.Path[0])), n)
	if b[1] != 1 { // found
		return a, false, nil
	}
	// recorderAnswer's layout (record.c's struct answer), read field by
	// field: the address is not aligned for a cast.
	e := binary.NativeEndian
	a.Found = 1
	a.Ino = e.Uint64(b[8:])
	r := b[16:]
	a.R.Tgid, a.R.Ptrace = e.Uint32(r[0:]), e.Uint32(r[4:])
	a.R.ExeDev, a.R.ExeIno = e.Uint64(r[8:]), e.Uint64(r[16:])
	a.R.Cgroup, a.R.TimeNs = e.Uint64(r[24:]), e.Uint64(r[32:])
	return a, true, nil
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
	if r.answer != nil {
		err = errors.Join(err, r.answer.Close())
		r.answer = nil
	}
	return errors.Join(err, r.objs.Close())
}

// userDev turns a kernel dev_t (major << 20 | minor) into the encoding
// stat(2) reports.
func userDev(kdev uint64) uint64 {
	return unix.Mkdev(uint32(kdev>>20), uint32(kdev&0xfffff))
}

// selfTest connects to a socket of its own and checks the record names
// this process and its executable: the programs run (the record is made and handed back),
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
