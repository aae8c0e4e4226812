package attest

// Peer is what the kernel recorded about the other end of a Unix socket at
// connect(). A Peer is not safe for concurrent use; Close it when done.
type Peer struct {
	PID   int32
	UID   uint32 // SO_PEERCRED uid (effective uid at connect)
	GID   uint32 // SO_PEERCRED gid (effective gid at connect)
	PIDFD int    // -1 when the kernel has no SO_PEERPIDFD (ENOPROTOOPT)

	// readTicks is CLOCK_BOOTTIME in clock ticks when ReadPeer read the
	// credentials, 0 when unknown. The process that connected started no
	// later than this, so a process behind PID that started after it is a
	// new owner of a reused PID.
	readTicks uint64

	// pidfsIno is the pidfs inode of PIDFD, read once (pidfsRead): the
	// descriptor names one process for its whole life.
	pidfsIno  uint64
	pidfsRead bool
}
