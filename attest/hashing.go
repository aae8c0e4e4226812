package attest

import (
	"fmt"
	"sync"
)

// HashStatus says whether an attestation hashed the executable, and if not,
// why not.
type HashStatus uint8

const (
	// HashSkipped: not hashed because no entry or rule could use a
	// unix:sha256 selector for this process (AttestOptions.SHA256 said no).
	HashSkipped HashStatus = iota
	// HashDone: ExeSHA256 is set.
	HashDone
	// HashOverLimit: the executable is larger than Options.HashSizeLimit.
	HashOverLimit
	// HashOff: hashing is disabled (a negative Options.HashSizeLimit).
	HashOff
)

func (s HashStatus) String() string {
	switch s {
	case HashSkipped:
		return "skipped"
	case HashDone:
		return "done"
	case HashOverLimit:
		return "over limit"
	case HashOff:
		return "off"
	}
	return fmt.Sprintf("HashStatus(%d)", uint8(s))
}

// HashNote explains, for a refusal, why p has no unix:sha256 selector when
// that matters to the operator; "" when it has one or none was needed.
func (p *Process) HashNote() string {
	switch p.ExeHash {
	case HashOverLimit:
		return fmt.Sprintf("no unix:sha256 selector: the executable is %d bytes, over attest.hash_size_limit", p.ExeSize)
	case HashOff:
		return "no unix:sha256 selector: hashing is turned off (a negative Options.HashSizeLimit)"
	}
	return ""
}

// HashStats counts the executables read to be hashed since New.
type HashStats struct {
	Files uint64 // executables read (cache misses)
	Bytes uint64 // bytes read to hash them
}

// HashStats reports how much hashing the Attestor has done.
func (a *Attestor) HashStats() HashStats {
	return HashStats{Files: a.hashFiles.Load(), Bytes: a.hashBytes.Load()}
}

// fileID names a file whatever its content: the single-flight key.
type fileID struct{ dev, ino uint64 }

// fileLocks serialises hashing per file (device and inode): the first
// caller reads, later callers for the same file wait and then find its
// result in the hash cache (or, when the file changed meanwhile, read the
// new content themselves). Unused locks are dropped, so the map holds only
// files being hashed.
type fileLocks struct {
	mu    sync.Mutex
	locks map[fileID]*fileLock
}

type fileLock struct {
	mu    sync.Mutex
	users int // holders and waiters, under fileLocks.mu
}

// lock locks id and returns its unlock.
func (l *fileLocks) lock(id fileID) (unlock func()) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[fileID]*fileLock)
	}
	fl := l.locks[id]
	if fl == nil {
		fl = &fileLock{}
		l.locks[id] = fl
	}
	fl.users++
	l.mu.Unlock()

	fl.mu.Lock()
	return func() {
		fl.mu.Unlock()
		l.mu.Lock()
		if fl.users--; fl.users == 0 {
			delete(l.locks, id)
		}
		l.mu.Unlock()
	}
}

// waiting reports how many callers wait for id's lock (tests).
func (l *fileLocks) waiting(id fileID) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fl := l.locks[id]; fl != nil {
		return fl.users - 1
	}
	return 0
}
