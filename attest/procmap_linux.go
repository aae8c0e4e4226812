//go:build linux

package attest

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procmapQuery is the kernel's struct procmap_query (linux/fs.h, Linux
// 6.11): one VMA of /proc/PID/maps by ioctl, instead of the whole file as
// text.
type procmapQuery struct {
	size        uint64
	queryFlags  uint64
	queryAddr   uint64
	vmaStart    uint64
	vmaEnd      uint64
	vmaFlags    uint64
	vmaPageSize uint64
	vmaOffset   uint64
	inode       uint64
	devMajor    uint32
	devMinor    uint32
	vmaNameSize uint32
	buildIDSize uint32
	vmaNameAddr uint64
	buildIDAddr uint64
}

const (
	// PROCMAP_QUERY is _IOWR('f', 17, struct procmap_query).
	procmapQueryIoctl = 3<<30 | uint(unsafe.Sizeof(procmapQuery{}))<<16 | 'f'<<8 | 17

	procmapVMAExecutable    = 0x04
	procmapCoveringOrNext   = 0x10
	procmapFileBackedVMA    = 0x20
	procmapExecFileFromNext = procmapVMAExecutable | procmapCoveringOrNext | procmapFileBackedVMA
)

// errProcmapFallback asks for the maps text instead: a VMA the ioctl would
// not describe (a path longer than PATH_MAX). Mappings already passed to
// fn may come again. errNoProcmapQuery is a kernel without the ioctl.
var (
	errProcmapFallback = errors.New("PROCMAP_QUERY cannot answer")
	errNoProcmapQuery  = errors.New("PROCMAP_QUERY not supported")
)

// queryExecMappings calls fn for each executable, file-backed mapping of
// the process whose /proc/PID/maps f is, asking the kernel for those VMAs
// only (PROCMAP_QUERY): a process's maps text has a line per VMA, most of
// them anonymous or not executable, and formatting and parsing it was most
// of the cost of the injected-code check. The kernel checks the caller's
// access to the process when f was opened, as for reading it. The path is
// the kernel's d_path, as in the text (" (deleted)" included), except that
// the text escapes a newline in it.
func queryExecMappings(f *os.File, fn func(mapping) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var name [unix.PathMax + 16]byte
	q := procmapQuery{size: uint64(unsafe.Sizeof(procmapQuery{})), queryFlags: procmapExecFileFromNext}
	for {
		q.queryAddr = q.vmaEnd
		q.vmaNameSize = uint32(len(name))
		q.vmaNameAddr = uint64(uintptr(unsafe.Pointer(&name[0])))
		q.buildIDSize = 0
		var errno unix.Errno
		if cerr := rc.Control(func(fd uintptr) {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(procmapQueryIoctl), uintptr(unsafe.Pointer(&q)))
		}); cerr != nil {
			return cerr
		}
		switch {
		case errno == unix.ENOENT:
			return nil // no VMA at or after queryAddr
		case errno != 0 && isGoneErrno(errno):
			return errno
		case errno == unix.ENOTTY:
			return errNoProcmapQuery
		case errno != 0:
			return errProcmapFallback
		}
		if q.inode == 0 {
			continue // as in the text: no file to judge
		}
		m := mapping{start: q.vmaStart, end: q.vmaEnd, major: q.devMajor, minor: q.devMinor, ino: q.inode}
		if n := int(q.vmaNameSize); n > 0 && n <= len(name) {
			m.path = string(name[:n-1]) // the size counts the terminating NUL
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}
