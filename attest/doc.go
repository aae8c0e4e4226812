// Package attest tells procmesh who is calling: it binds the other end of a
// Unix socket to the process that made the connection and describes that
// process as selectors ("unix:uid:1000", "unix:path:/usr/bin/billing",
// "unix:sha256:…", "container:id:…", "k8s:pod-uid:…", "systemd:id:…") for
// the registry to match.
//
// The flow is ReadPeer at accept (SO_PEERCRED, plus SO_PEERPIDFD on Linux
// 6.5+), Fingerprint (a cheap, comparable key the workload package caches
// by), and Attest on a cache miss (a full read of /proc/PID). Alive lets a
// cache drop processes that have exited.
//
// # Guarantees
//
// PID exit or reuse between connect and attestation (THREATS.md I2) is
// refused with ErrPeerGone, never attributed to the PID's new owner. With a
// pidfd, every /proc read is followed by a liveness check through the
// pidfd, and on pidfs the pidfd's inode (never reused while the system
// runs) is part of the Fingerprint. Without one (old kernel or
// Options.DisablePIDFD) the start time (field 22 of /proc/PID/stat, counted
// after the last ')') is read before and after and must not change, and a
// process that started after ReadPeer read the credentials is refused. The
// fallback inherits the start time's 10 ms resolution; the pidfd path has
// no such window.
//
// Identity is bound at connect(): the uid and gid are those SO_PEERCRED
// recorded then, and a process whose effective uid or gid differs by the
// time it is attested is refused (ErrPeerGone), so a setuid exec after
// connect gains nothing.
//
// Fork and exec after connect (I3): SO_PEERCRED names the connecting PID,
// frozen at connect; it is not the PID of whoever holds the socket later.
// Identity is bound to the connecting process as it is when procmesh
// attests it, and procmesh attests at accept. An exec after that changes
// the Fingerprint (exe device and inode), so Attest with an earlier
// Fingerprint fails with ErrPeerGone and a cached attestation is never
// reused for a different image. An exec that happens between connect and
// accept is not detectable: the connection is attributed to the new image
// of the connecting PID, even if a forked child that kept the socket still
// runs the old one. Registration entries that pair unix:path or unix:sha256
// with unix:uid make that exec useless to an attacker who cannot run the
// target binary under the target uid.
//
// Executables (I4) are hashed through the descriptor opened on
// /proc/PID/exe, so the hash is of what runs, even after the file was
// replaced on disk or deleted ("(deleted)" is stripped from the path and
// reported as ExeDeleted; a deleted executable keeps its unix:path
// selector, the path it was started from). Executables over
// Options.HashSizeLimit get no unix:sha256 selector.
//
// The caller chooses the executable, so it chooses what hashing costs
// (F12): AttestOptions.SHA256 lets the caller skip the read when no entry
// could use the hash (Process.ExeHash says what was done, WithSHA256 adds
// it later), concurrent hashes of one file (device and inode) share one
// read, at most Options.MaxConcurrentHashes files are read at once, and
// results are cached by device, inode, mtime, ctime and size. A file
// changed while it is read fails that attestation; it never caches a hash
// for content it did not read. A script run by an
// interpreter attests as the interpreter (/proc/PID/exe is /usr/bin/dash,
// say): the script's path and content are not selectors, so scripts must
// be told apart by uid, cgroup or their own interpreter copy.
//
// Malformed /proc content (I10) is parsed or refused, never a panic; the
// parsers are pure functions over bytes and fuzzed.
//
// # What it leaves out
//
// Root on the node, and anyone able to ptrace the workload, write its
// executable or move it between cgroups, is out of scope: they can be any
// process they like. Cgroup-derived selectors (container:id, k8s:pod-uid,
// systemd:id) are only as strong as control over cgroup names: a systemd
// user manager or rootless runtime can create cgroups with any name inside
// its delegated subtree, so pair those selectors with unix:uid. Paths are
// as seen from procmesh's mount namespace. Supplementary groups are read
// from /proc at attestation, not frozen at connect. Reading other users'
// /proc/PID/exe needs root or CAP_SYS_PTRACE. Only Linux is supported;
// elsewhere every call returns ErrUnsupported.
package attest
