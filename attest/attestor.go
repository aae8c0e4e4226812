package attest

import (
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/rs/zerolog"
)

// Defaults for the zero values of Options.
const (
	DefaultProcRoot      = "/proc"
	DefaultHashCacheSize = 1024

	// DefaultHashSizeLimit is 128 MiB: above the largest service binaries
	// in common use (node 99 MB, kubelet and envoy about 100 MB, large
	// Go and Rust services 50-100 MB) and half of the 256 MiB that let a
	// caller make procmesh read a quarter of a gigabyte per connection
	// (THREATS F12).
	DefaultHashSizeLimit = 128 << 20
	// DefaultMaxConcurrentHashes bounds the executables read at once.
	DefaultMaxConcurrentHashes = 2

	// nameCacheSize bounds the uid/gid → name cache.
	nameCacheSize = 512
)

// Options configure an Attestor. The zero value is ready to use.
type Options struct {
	// ProcRoot is where procfs is mounted. Default "/proc".
	ProcRoot string
	// DisablePIDFD ignores Peer.PIDFD and forces the start-time fallback.
	DisablePIDFD bool
	// HashSizeLimit caps the size of the executables hashed. Default 128 MiB
	// (when 0); negative disables hashing. A larger executable gets no
	// unix:sha256 selector, which is logged, not an error.
	HashSizeLimit int64
	// MaxConcurrentHashes bounds how many executables are read to be hashed
	// at once; further hashes wait their turn. Concurrent hashes of one file
	// (device and inode) share one read whatever this is. Default 2 (when 0
	// or negative).
	MaxConcurrentHashes int
	// HashCacheSize bounds the executable hash cache, keyed by device, inode,
	// mtime, ctime and size. Default 1024 entries (when 0 or negative).
	HashCacheSize int
	// LibraryDirs are the directories whose root-owned files a process may
	// map as code without being reported as running injected code
	// (Process.InjectedCode, THREATS I17); files below them count, at any
	// depth. Default (nil): ld.so's defaults (/lib, /lib64, /usr/lib,
	// /usr/lib64) and the directories of /etc/ld.so.conf, read by New.
	LibraryDirs []string
	// Logger receives debug lines and oversize-executable warnings. The zero
	// value discards.
	Logger zerolog.Logger
}

// Attestor reads /proc to describe the processes behind Unix socket peers.
// It is safe for concurrent use.
type Attestor struct {
	procRoot  string
	usePIDFD  bool
	hashLimit int64
	libDirs   []string // resolved through symlinks
	log       zerolog.Logger
	hashes    *lru.Cache[hashKey, string]
	names     *nameCache
	cgroups   cgroupTrust

	// Hashing cost bounds (THREATS F12): one read per file at a time, at
	// most cap(hashSlots) reads at once; hashQueued counts callers waiting
	// for a slot.
	hashLocks  fileLocks
	hashSlots  chan struct{}
	hashQueued atomic.Int32
	hashFiles  atomic.Uint64
	hashBytes  atomic.Uint64

	// noProcmapQuery: the kernel has no PROCMAP_QUERY (Linux < 6.11), so
	// the injected-code check reads /proc/PID/maps as text.
	noProcmapQuery atomic.Bool

	// Test hooks (I2): beforeRead runs when Attest starts, after the peer
	// was read and fingerprinted and before any /proc read; beforeVerify
	// runs after the /proc reads and before the final checks.
	beforeRead   func()
	beforeVerify func()
	// beforeHash runs when a hash read starts, after the file lock and the
	// slot are taken (F12 tests).
	beforeHash func()
}

// hashKey identifies the content of an executable file.
type hashKey struct {
	dev, ino     uint64
	mtime, ctime int64 // nanoseconds since the epoch
	size         int64
}

// New returns an Attestor for opts.
func New(opts Options) *Attestor {
	if opts.ProcRoot == "" {
		opts.ProcRoot = DefaultProcRoot
	}
	if opts.HashSizeLimit == 0 {
		opts.HashSizeLimit = DefaultHashSizeLimit
	}
	if opts.MaxConcurrentHashes <= 0 {
		opts.MaxConcurrentHashes = DefaultMaxConcurrentHashes
	}
	if opts.HashCacheSize <= 0 {
		opts.HashCacheSize = DefaultHashCacheSize
	}
	if opts.LibraryDirs == nil {
		opts.LibraryDirs = systemLibraryDirs(DefaultLdSoConf)
	} else {
		opts.LibraryDirs = resolveDirs(opts.LibraryDirs)
	}
	// lru.New fails only for a size below 1, excluded above.
	hashes, _ := lru.New[hashKey, string](opts.HashCacheSize)
	return &Attestor{
		procRoot:  opts.ProcRoot,
		usePIDFD:  !opts.DisablePIDFD,
		hashLimit: opts.HashSizeLimit,
		libDirs:   opts.LibraryDirs,
		log:       opts.Logger,
		hashes:    hashes,
		names:     newNameCache(nameCacheSize),
		hashSlots: make(chan struct{}, opts.MaxConcurrentHashes),
	}
}

// Process is the full description of an attested process.
type Process struct {
	Fingerprint
	SupplementaryGIDs []uint32
	User, Group       string // names, "" when unknown (os/user lookup) or not looked up
	NamesLookedUp     bool   // User and Group were looked up (AttestOptions.Names, WithNames)
	ExePath           string // without a " (deleted)" suffix
	ExeDeleted        bool
	ExeSize           int64      // bytes
	ExeSHA256         string     // lowercase hex, "" unless ExeHash is HashDone
	ExeHash           HashStatus // whether ExeSHA256 was computed, or why not
	ExeBytesHashed    int64      // bytes this attestation read to hash; 0 when the hash was cached
	Cgroup            string     // the v2 path (or the first v1 path)
	ContainerID       string
	PodUID            string
	SystemdUnit       string
	Selectors         []string // sorted, deduplicated

	// ExePathForeign: ExePath (the path as the process's own mount
	// namespace names its executable) does not name that executable in
	// procmesh's mount namespace, where another file or none is there
	// (THREATS I16); there is no unix:path selector.
	ExePathForeign bool
	// TracerPID is the process tracing this one (ptrace) when it was
	// attested, 0 for none; Traced is TracerPID != 0, and a caller that
	// knows more (a connect-time record of the ptrace state) may set it too.
	// A traced process matches only entries that allow it (THREATS I17).
	TracerPID int32
	Traced    bool
	// InjectedCode says why the process runs code its executable did not
	// choose: a dynamic-loader override (LD_PRELOAD, LD_AUDIT,
	// LD_LIBRARY_PATH, GCONV_PATH) in its environment, or an executable
	// mapping of a file that is neither the executable nor a root-owned
	// file under the system library directories. nil when none was found.
	// Such a process matches only entries that allow it (THREATS I17).
	InjectedCode []string
	// exeKey is the executable's content key (device, inode, times, size)
	// at attestation, so WithSHA256 can hash the same content later.
	exeKey hashKey
}
