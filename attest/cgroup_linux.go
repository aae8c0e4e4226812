//go:build linux

package attest

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// trustCgroup drops the ids of info that a non-root user could have named
// (I15): each is kept only when root owns every directory from the
// hierarchy's root down to the one the id was read from. The drops are
// logged as a warning: they mean a delegated subtree uses a runtime's
// layout, or procmesh cannot see the cgroup file systems.
func (a *Attestor) trustCgroup(pid int32, info *cgroupInfo) {
	read := func() ([]byte, error) { return os.ReadFile(a.procRoot + "/self/mountinfo") }
	errs := a.cgroups.dropUntrusted(info, read, cgroupOwners)
	if len(errs) == 0 {
		return
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	a.log.Warn().Int32("pid", pid).Str("cgroup", info.Path).Strs("why", msgs).
		Msg("attest: cgroup-derived selectors dropped: their cgroup is not controlled by root alone")
}

// cgroupOwners is the real ownersFunc: it opens mount and then each
// directory below it by name, without following symlinks, and fstats each
// descriptor, so every owner read is of a directory of the same cgroup
// file system, reached from its root.
func cgroupOwners(mount string, segs []string) (int, uint32, error) {
	fd, err := unix.Open(mount, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", mount, err)
	}
	defer func() { unix.Close(fd) }()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", mount, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC && fs.Type != unix.CGROUP_SUPER_MAGIC {
		return 0, 0, fmt.Errorf("%s is not a cgroup file system (magic %#x)", mount, fs.Type)
	}
	var root unix.Stat_t
	if err := unix.Fstat(fd, &root); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", mount, err)
	}
	if root.Uid != 0 {
		return 0, root.Uid, nil
	}
	path := mount
	for i, seg := range segs {
		path += "/" + seg
		next, err := unix.Openat(fd, seg, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, 0, fmt.Errorf("open %s: %w", path, err)
		}
		unix.Close(fd)
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, 0, fmt.Errorf("stat %s: %w", path, err)
		}
		if st.Dev != root.Dev {
			return 0, 0, fmt.Errorf("%s is on another file system than %s", path, mount)
		}
		if st.Uid != 0 {
			return i + 1, st.Uid, nil
		}
	}
	return len(segs) + 1, 0, nil
}
