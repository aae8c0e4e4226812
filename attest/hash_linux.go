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

// overHashLimit reports whether a file of size bytes is not to be hashed.
func (a *Attestor) overHashLimit(size int64) bool {
	return a.hashLimit < 0 || size > a.hashLimit
}

// exeHash returns the lowercase hex SHA-256 of the open file f, whose fstat
// is st, reading through f itself (what runs, not a path looked up again).
// Results are cached by hashKeyOf. The caller checks overHashLimit first.
func (a *Attestor) exeHash(f *os.File, st *unix.Stat_t) (string, error) {
	key := hashKeyOf(st)
	if sum, ok := a.hashes.Get(key); ok {
		return sum, nil
	}
	h := sha256.New()
	buf := make([]byte, hashBufSize)
	var off int64
	for off <= st.Size {
		n, err := f.ReadAt(buf, off)
		h.Write(buf[:n])
		off += int64(n)
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
	sum := hex.EncodeToString(h.Sum(nil))
	a.hashes.Add(key, sum)
	return sum, nil
}
