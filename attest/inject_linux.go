//go:build linux

package attest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// readInjected returns why pid runs code its executable did not choose
// (THREATS I17), nil when nothing was found: a dynamic-loader override in
// its environment (/proc/PID/environ), or an executable mapping
// (/proc/PID/maps) of a file that is neither the executable (exeDev,
// exeIno) nor a trusted system library (see trustedLibrary).
func (a *Attestor) readInjected(pid int32, exeDev, exeIno uint64) ([]string, error) {
	reasons, err := a.readLoaderEnv(pid)
	if err != nil {
		return nil, err
	}
	ns := &nsCheck{a: a, pid: pid}
	trust := &trustCache{dirs: a.libDirs, ok: map[string]string{}}
	seen := map[[2]uint64]bool{}
	err = a.eachExecMapping(pid, func(m mapping) error {
		if len(reasons) >= maxInjectedReasons {
			return nil
		}
		dev := unix.Mkdev(m.major, m.minor)
		if (dev == exeDev && m.ino == exeIno) || seen[[2]uint64{dev, m.ino}] {
			return nil
		}
		seen[[2]uint64{dev, m.ino}] = true
		why, err := a.foreignMapping(pid, m, dev, ns, trust)
		if err != nil {
			return err
		}
		if why != "" {
			reasons = append(reasons, why)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return reasons, nil
}

// foreignMapping returns why the executable mapping m is not a trusted
// system library, "" when it is one.
//
// The path in the maps is the one the process's mount namespace gives the
// file. When the file at that path in procmesh's mount namespace is the
// mapped file (same device and inode) it is judged there. When the process
// is in another mount namespace (a container), the path is looked up in
// the process's own view, through /proc/PID/root, and the directories are
// judged there too. A deleted file (a library replaced by an upgrade while
// the process runs) is judged by the path it had and by its owner and mode
// read through /proc/PID/map_files.
func (a *Attestor) foreignMapping(pid int32, m mapping, dev uint64, ns *nsCheck, trust *trustCache) (string, error) {
	p, deleted := m.path, false
	if trimmed, ok := cutDeleted(m.path); ok {
		p, deleted = trimmed, true
	}
	if len(p) == 0 || p[0] != '/' {
		return fmt.Sprintf("%s is mapped executable and is not a file procmesh can see", truncate(m.path, 200)), nil
	}
	root := "" // where p is looked up: procmesh's namespace, or the process's view
	var st unix.Stat_t
	if deleted || unix.Stat(p, &st) != nil || st.Dev != dev || st.Ino != m.ino {
		same, err := ns.same()
		if err != nil {
			return "", err
		}
		if !same {
			root = a.procPath(pid, "root")
		} else if !deleted {
			return fmt.Sprintf("%s is mapped executable and is not the file at that path", truncate(p, 200)), nil
		}
		if deleted {
			link := a.procPath(pid, "map_files/"+strconv.FormatUint(m.start, 16)+"-"+strconv.FormatUint(m.end, 16))
			if err := unix.Stat(link, &st); err != nil {
				if isGoneErrno(err) {
					return "", gone(pid, "stat "+link, err)
				}
				// map_files needs CAP_SYS_ADMIN: without it the file
				// cannot be judged, which refuses it like foreign code.
				return fmt.Sprintf("%s is mapped executable: a deleted file procmesh cannot check (stat %s: %v)",
					truncate(m.path, 200), link, err), nil
			}
		} else if err := unix.Stat(root+p, &st); err != nil {
			// (A process that exited meanwhile fails the Fingerprint
			// check that ends attestation.)
			return fmt.Sprintf("%s is mapped executable and is not a file in its own mount namespace either: %v", truncate(p, 200), err), nil
		}
		if st.Dev != dev || st.Ino != m.ino {
			return fmt.Sprintf("%s is mapped executable and is not the file at that path in its mount namespace", truncate(m.path, 200)), nil
		}
	}
	if why := trust.library(root, p, &st); why != "" {
		return fmt.Sprintf("%s is mapped executable: %s", truncate(m.path, 200), why), nil
	}
	return "", nil
}

// cutDeleted strips the " (deleted)" the kernel appends to the path of an
// unlinked file.
func cutDeleted(p string) (string, bool) {
	const suffix = " (deleted)"
	if len(p) > len(suffix) && p[len(p)-len(suffix):] == suffix {
		return p[:len(p)-len(suffix)], true
	}
	return p, false
}

// trustCache applies the trusted-library rule, caching directory verdicts
// for one attestation.
type trustCache struct {
	dirs []string
	ok   map[string]string // root+directory -> "" (trusted) or why not
}

// library returns "" when the file p (stat st) is a trusted system library:
// a regular file owned by root and writable by no one else, below one of the
// system library directories, every directory from / down to it a real
// directory (no symlink) owned by root and writable by no one else (or
// sticky, like /tmp: there only an entry's owner, root here, can rename or
// remove it). So only root can have put it there or changed it. Otherwise
// it says why not. The directories are looked up below root: "" for
// procmesh's mount namespace, /proc/PID/root for the process's own.
func (t *trustCache) library(root, p string, st *unix.Stat_t) string {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "not a regular file"
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Sprintf("owned by uid %d, mode %04o (a system library is owned by root and writable by no one else)",
			st.Uid, st.Mode&0o7777)
	}
	if !slices.ContainsFunc(t.dirs, func(d string) bool { return underDir(p, d) }) {
		return "outside the system library directories (ld.so's defaults and /etc/ld.so.conf)"
	}
	return t.dir(root, path.Dir(p))
}

// dir returns "" when d (below root) and every directory above it are
// owned by root and writable by no one else or sticky, else why not.
func (t *trustCache) dir(root, d string) string {
	if why, ok := t.ok[root+d]; ok {
		return why
	}
	why := ""
	if d != "/" {
		why = t.dir(root, path.Dir(d))
	}
	if why == "" {
		var st unix.Stat_t
		var err error
		if d == "/" && root != "" {
			err = unix.Stat(root+"/", &st) // the process's root, through the magic link
		} else {
			err = unix.Lstat(root+d, &st)
		}
		switch {
		case err != nil:
			why = fmt.Sprintf("directory %s: %v", d, err)
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			why = fmt.Sprintf("%s is not a directory", d)
		case st.Uid != 0 || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0):
			why = fmt.Sprintf("directory %s is owned by uid %d, mode %04o (writable by others than root)", d, st.Uid, st.Mode&0o7777)
		}
	}
	t.ok[root+d] = why
	return why
}

// nsCheck finds out once whether pid shares procmesh's mount namespace.
type nsCheck struct {
	a    *Attestor
	pid  int32
	done bool
	is   bool
	err  error
}

func (n *nsCheck) same() (bool, error) {
	if !n.done {
		n.done = true
		n.is, n.err = n.a.sameMountNS(n.pid)
	}
	return n.is, n.err
}

// sameMountNS reports whether pid is in procmesh's mount namespace.
func (a *Attestor) sameMountNS(pid int32) (bool, error) {
	var mine, theirs unix.Stat_t
	self := a.procRoot + "/self/ns/mnt"
	if err := unix.Stat(self, &mine); err != nil {
		return false, fmt.Errorf("attest: stat %s: %w", self, err)
	}
	link := a.procPath(pid, "ns/mnt")
	if err := unix.Stat(link, &theirs); err != nil {
		if isGoneErrno(err) {
			return false, gone(pid, "stat "+link, err)
		}
		return false, fmt.Errorf("attest: stat %s: %w", link, err)
	}
	return mine.Dev == theirs.Dev && mine.Ino == theirs.Ino, nil
}

// eachExecMapping calls fn for each executable, file-backed mapping of pid:
// by PROCMAP_QUERY where the kernel has it (Linux 6.11), else reading
// /proc/PID/maps as a stream (large processes have many).
func (a *Attestor) eachExecMapping(pid int32, fn func(mapping) error) error {
	p := a.procPath(pid, "maps")
	f, err := openProc(pid, p)
	if err != nil {
		return err
	}
	defer f.Close()
	if !a.noProcmapQuery.Load() {
		err := queryExecMappings(f, fn)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errProcmapFallback), errors.Is(err, errNoProcmapQuery):
			if errors.Is(err, errNoProcmapQuery) {
				a.noProcmapQuery.Store(true)
			}
			if _, serr := f.Seek(0, io.SeekStart); serr != nil {
				return fmt.Errorf("attest: %s: %w", p, serr)
			}
		case isGoneErrno(err):
			return gone(pid, "PROCMAP_QUERY "+p, err)
		default:
			return err // fn's own
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		m, exec, err := parseMapsLine(sc.Bytes())
		if err != nil {
			return fmt.Errorf("attest: %s: %w", p, err)
		}
		if !exec {
			continue
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if isGoneErrno(err) {
			return gone(pid, "read "+p, err)
		}
		return fmt.Errorf("attest: read %s: %w", p, err)
	}
	return nil
}

// readLoaderEnv returns a reason for each dynamic-loader override in pid's
// environment, read as a stream of NUL-terminated entries.
func (a *Attestor) readLoaderEnv(pid int32) ([]string, error) {
	p := a.procPath(pid, "environ")
	f, err := openProc(pid, p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var reasons []string
	r := bufio.NewReaderSize(f, 4096)
	entryStart := true
	for {
		chunk, err := r.ReadSlice(0)
		if entryStart && len(chunk) > 0 {
			if why := loaderOverride(trimNUL(chunk)); why != "" && len(reasons) < maxInjectedReasons {
				reasons = append(reasons, why)
			}
		}
		switch {
		case err == nil:
			entryStart = true
		case errors.Is(err, bufio.ErrBufferFull):
			entryStart = false
		case errors.Is(err, io.EOF):
			return reasons, nil
		case isGoneErrno(err):
			return nil, gone(pid, "read "+p, err)
		default:
			return nil, fmt.Errorf("attest: read %s: %w", p, err)
		}
	}
}

func trimNUL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == 0 {
		return b[:n-1]
	}
	return b
}

// openProc opens a /proc file of pid; a vanished process gives ErrPeerGone.
// The file is not registered with the runtime's poller: os.Open would try
// (a regular file cannot be polled) and undo it, four system calls more
// per file on every attestation.
func openProc(pid int32, p string) (*os.File, error) {
	fd, err := openRetry(p)
	if err != nil {
		if isGoneErrno(err) {
			return nil, gone(pid, "open "+p, err)
		}
		return nil, fmt.Errorf("attest: open %s: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}
