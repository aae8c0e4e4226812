//go:build linux

package attest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// hashBufSize is the read size used to hash an executable.
const hashBufSize = 256 << 10

// hashKeyOf returns the cache key for the file st describes. ctime joins
// the contract's dev+inode+mtime+size because mtime can be set back with
// utimensat(2) after a same-size rewrite, ctime cannot.
func hashKeyOf(st *unix.Stat_t) hashKey {
	return hashKey{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
		size:  st.Size,
	}
}

// hashIfUsed hashes exe into proc when need (nil: always) says an entry
// could use the hash and the file is within the size limit, and records in
// proc.ExeHash what was done. The order of the checks decides what a
// refusal explains: a file nobody could pin is never reported as too big.
func (a *Attestor) hashIfUsed(proc *Process, exe *openExe, need func([]string) bool) error {
	switch {
	case need != nil && !need(selectors(proc)):
		proc.ExeHash = HashSkipped
		return nil
	case a.hashLimit < 0:
		proc.ExeHash = HashOff
		return nil
	case exe.st.Size > a.hashLimit:
		a.log.Warn().Int32("pid", proc.PID).Str("exe", proc.ExePath).Int64("size", exe.st.Size).
			Int64("limit", a.hashLimit).Msg("attest: executable over the hash size limit (attest.hash_size_limit), no unix:sha256 selector")
		proc.ExeHash = HashOverLimit
		return nil
	}
	sum, read, err := a.exeHash(exe.f, &exe.st)
	if err != nil {
		return err
	}
	proc.ExeSHA256, proc.ExeHash, proc.ExeBytesHashed = sum, HashDone, read
	return nil
}

// WithSHA256 returns p with its executable hashed when its attestation
// skipped the hash (ExeHash is HashSkipped) because no entry could use it
// then, for a caller whose entries changed since: a copy, with the
// selectors recomputed; p itself otherwise. It opens /proc/PID/exe again
// and hashes it only if it is still the file attested with the same
// content key (device, inode, mtime, ctime, size), so the hash is that of
// the content p ran; otherwise the error wraps ErrPeerGone.
func (a *Attestor) WithSHA256(p *Process) (*Process, error) {
	if p.ExeHash != HashSkipped {
		return p, nil
	}
	f, err := openProc(p.PID, a.procPath(p.PID, "exe"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exe := &openExe{f: f}
	if err := unix.Fstat(int(f.Fd()), &exe.st); err != nil {
		return nil, fmt.Errorf("attest: fstat %s: %w", f.Name(), err)
	}
	if hashKeyOf(&exe.st) != p.exeKey {
		return nil, gone(p.PID, "executable changed since it was attested", nil)
	}
	q := *p
	if err := a.hashIfUsed(&q, exe, nil); err != nil {
		return nil, err
	}
	q.Selectors = selectors(&q)
	return &q, nil
}

// exeHash returns the lowercase hex SHA-256 of the open file f, whose fstat
// is st, reading through f itself (what runs, not a path looked up again).
// Results are cached by hashKeyOf. The caller checks the size limit first.
// read is the number of bytes this call read (0 when cached).
//
// Cost bounds (THREATS F12): concurrent calls for one file (device and
// inode) read it once: the others wait for the first and take its result
// from the cache, or read the file themselves if its content key changed
// meanwhile (it is still read through their own descriptor and checked
// against their own key). At most cap(a.hashSlots) files are read at once;
// further readers wait for a slot.
func (a *Attestor) exeHash(f *os.File, st *unix.Stat_t) (sum string, read int64, err error) {
	key := hashKeyOf(st)
	if sum, ok := a.hashes.Get(key); ok {
		return sum, 0, nil
	}
	unlock := a.hashLocks.lock(fileID{key.dev, key.ino})
	defer unlock()
	if sum, ok := a.hashes.Get(key); ok {
		return sum, 0, nil
	}
	a.hashQueued.Add(1)
	a.hashSlots <- struct{}{}
	a.hashQueued.Add(-1)
	defer func() { <-a.hashSlots }()
	if a.beforeHash != nil {
		a.beforeHash()
	}
	sum, err = a.readHash(f, st)
	if err != nil {
		return "", st.Size, err
	}
	a.hashes.Add(key, sum)
	return sum, st.Size, nil
}

// readHash reads f to its end and hashes it, failing if the file changed
// while it was read.
func (a *Attestor) readHash(f *os.File, st *unix.Stat_t) (string, error) {
	key := hashKeyOf(st)
	a.hashFiles.Add(1)
	h := sha256.New()
	buf := make([]byte, hashBufSize)
	var off int64
	for off <= st.Size {
		n, err := f.ReadAt(buf, off)
		h.Write(buf[:n])
		off += int64(n)
		a.hashBytes.Add(uint64(n))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("attest: hash %s: %w", f.Name(), err)
		}
	}
	var after unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &after); err != nil {
		return "", fmt.Errorf("attest: hash %s: fstat: %w", f.Name(), err)
	}
	if off != st.Size || hashKeyOf(&after) != key {
		return "", fmt.Errorf("attest: hash %s: file changed while hashing", f.Name())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
