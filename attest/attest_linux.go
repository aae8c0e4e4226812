//go:build linux

package attest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Attest reads /proc for peer and returns the full process description,
// user and group names included: AttestWith with Names set.
func (a *Attestor) Attest(p *Peer, fp Fingerprint) (*Process, error) {
	return a.AttestWith(p, fp, AttestOptions{Names: true})
}

// AttestWith reads /proc for peer and returns the process description,
// with the optional parts o asks for.
// PID-reuse protection (I2): with a pidfd, liveness is checked after all /proc
// reads; without, start time is read before and after and must not change;
// either way the Fingerprint is recomputed at the end and must equal fp —
// otherwise ErrPeerGone (wrapped). The exe is hashed through the opened
// /proc/PID/exe (what runs, not a path re-read later; "(deleted)" suffix on the
// readlink handled and reported as the path without suffix plus Deleted=true).
func (a *Attestor) AttestWith(p *Peer, fp Fingerprint, o AttestOptions) (*Process, error) {
	if p == nil || p.PID <= 0 {
		return nil, errors.New("attest: no peer PID")
	}
	if fp.PID != p.PID {
		return nil, fmt.Errorf("attest: pid %d: fingerprint is for pid %d", p.PID, fp.PID)
	}
	if a.beforeRead != nil {
		a.beforeRead()
	}
	proc, exe, err := a.read(p.PID, a.peerPIDFD(p), fp)
	if err != nil {
		return nil, a.explain(p, fp, err)
	}
	defer exe.f.Close()
	if o.Names {
		a.lookupNames(proc)
	}
	if err := a.hashIfUsed(proc, exe, o.SHA256); err != nil {
		return nil, a.explain(p, fp, err)
	}
	if a.beforeVerify != nil {
		a.beforeVerify()
	}
	now, err := a.Fingerprint(p)
	if err != nil {
		return nil, err
	}
	if now != fp {
		return nil, gone(p.PID, "process changed since it was fingerprinted: "+fp.changes(now), nil)
	}
	proc.Selectors = selectors(proc)
	a.log.Debug().Int32("pid", p.PID).Str("exe", proc.ExePath).Strs("selectors", proc.Selectors).Msg("attest: attested")
	return proc, nil
}

// explain turns a failed /proc read into ErrPeerGone when the peer has gone
// or changed meanwhile (the read failed because of that), else returns err.
func (a *Attestor) explain(p *Peer, fp Fingerprint, err error) error {
	if errors.Is(err, ErrPeerGone) {
		return err
	}
	now, ferr := a.Fingerprint(p)
	if errors.Is(ferr, ErrPeerGone) || (ferr == nil && now != fp) {
		return gone(p.PID, "changed while /proc was read", err)
	}
	return err
}

// openExe is a process's executable, opened through /proc/PID/exe.
type openExe struct {
	f  *os.File
	st unix.Stat_t
}

// read gathers everything but the names, the hash and the selectors, and
// returns the executable opened (the caller closes it). With pidfd < 0 it
// first checks the start time is still fp's (the "before" read of the
// fallback).
func (a *Attestor) read(pid int32, pidfd int, fp Fingerprint) (*Process, *openExe, error) {
	if pidfd < 0 {
		st, err := a.readStat(pid)
		if err != nil {
			return nil, nil, err
		}
		if st.StartTime != fp.StartTime {
			return nil, nil, gone(pid, fmt.Sprintf("PID reused: start time %d -> %d", fp.StartTime, st.StartTime), nil)
		}
	}
	status, err := a.readStatus(pid)
	if err != nil {
		return nil, nil, err
	}
	if status.UID[1] != fp.UID || status.GID[1] != fp.GID {
		return nil, nil, gone(pid, fmt.Sprintf("credentials changed: uid:gid %d:%d -> %d:%d",
			fp.UID, fp.GID, status.UID[1], status.GID[1]), nil)
	}
	cg, err := a.readCgroup(pid)
	if err != nil {
		return nil, nil, err
	}
	a.trustCgroup(pid, &cg)
	proc := &Process{
		Fingerprint:       fp,
		SupplementaryGIDs: status.Groups,
		Cgroup:            cg.Path,
		ContainerID:       cg.ContainerID,
		PodUID:            cg.PodUID,
		SystemdUnit:       cg.SystemdUnit,
		TracerPID:         status.TracerPID,
		Traced:            status.TracerPID != 0,
	}
	exe, err := a.readExe(pid, fp, proc)
	if err != nil {
		return nil, nil, err
	}
	if proc.InjectedCode, err = a.readInjected(pid, fp.ExeDev, fp.ExeIno); err != nil {
		exe.f.Close()
		return nil, nil, err
	}
	return proc, exe, nil
}

// readExe fills proc's path fields and returns the executable opened. It
// opens /proc/PID/exe, checks the opened file is fp's exe, and takes the
// path from the open descriptor (readlink of /proc/self/fd/N), as the hash
// will be, so they describe the same file even if the process execs
// meanwhile.
func (a *Attestor) readExe(pid int32, fp Fingerprint, proc *Process) (*openExe, error) {
	link := a.procPath(pid, "exe")
	f, err := openProc(pid, link)
	if err != nil {
		return nil, err
	}
	exe := &openExe{f: f}
	if err := unix.Fstat(int(f.Fd()), &exe.st); err != nil {
		f.Close()
		return nil, fmt.Errorf("attest: fstat %s: %w", link, err)
	}
	st := &exe.st
	if uint64(st.Dev) != fp.ExeDev || st.Ino != fp.ExeIno {
		f.Close()
		return nil, gone(pid, fmt.Sprintf("exe changed: dev:inode %d:%d -> %d:%d",
			fp.ExeDev, fp.ExeIno, uint64(st.Dev), st.Ino), nil)
	}
	fdLink := a.procRoot + "/self/fd/" + strconv.Itoa(int(f.Fd()))
	target, err := os.Readlink(fdLink)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("attest: readlink %s (%s): %w", fdLink, link, err)
	}
	proc.ExePath, proc.ExeDeleted = exePath(target, st)
	if proc.ExePathForeign, err = a.exePathForeign(pid, proc, st); err != nil {
		f.Close()
		return nil, err
	}
	proc.ExeSize = st.Size
	proc.exeKey = hashKeyOf(st)
	return exe, nil
}

// exePathForeign reports whether proc.ExePath fails to name the executable
// st in procmesh's mount namespace (THREATS I16). The readlink of
// /proc/PID/exe is the path in the process's own mount namespace: after
// "unshare -Urm" and a bind mount, or in a container, any file can sit at
// any path there. A file still linked must be the file found at that path
// here (same device and inode). A deleted file cannot be looked up; its
// path is trusted only when the process shares procmesh's mount namespace,
// where the path was the file's name here.
func (a *Attestor) exePathForeign(pid int32, proc *Process, st *unix.Stat_t) (bool, error) {
	if !proc.ExeDeleted {
		var here unix.Stat_t
		err := unix.Stat(proc.ExePath, &here)
		return err != nil || here.Dev != st.Dev || here.Ino != st.Ino, nil
	}
	same, err := a.sameMountNS(pid)
	return !same, err
}

// exePath interprets the readlink of /proc/PID/exe for the file st: the
// kernel appends " (deleted)" once the file is unlinked. A file whose name
// really ends in " (deleted)" is told apart by looking it up.
func exePath(target string, st *unix.Stat_t) (path string, deleted bool) {
	trimmed, ok := strings.CutSuffix(target, " (deleted)")
	if !ok {
		return target, false
	}
	var named unix.Stat_t
	if unix.Lstat(target, &named) == nil && named.Dev == st.Dev && named.Ino == st.Ino {
		return target, false
	}
	return trimmed, true
}
