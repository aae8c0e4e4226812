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
// Fork and exec after connect (I3, I11): SO_PEERCRED names the connecting
// PID, frozen at connect; /proc read afterwards describes whatever that PID
// runs by then. This package alone cannot tell which program ran at
// connect(): an exec between connect and attestation is attested as the
// exec'd image. Package connrecord closes that window with the kernel's
// record of the executable at connect(), which the workload package
// compares with the Fingerprint; bytes written by another process than the
// connecting one are refused by the proxy's reads (I12). An exec after
// attestation changes the Fingerprint (exe device and inode), so a cached
// attestation is never reused for a different image.
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
// Paths in other mount namespaces (I16): the readlink of /proc/PID/exe is
// the path as the process's own mount namespace names it, and there (after
// "unshare -Urm" and a bind mount, or in a container) any file can sit at
// any path. The unix:path selector is emitted only when the file at that
// path in procmesh's mount namespace is the running executable (same
// device and inode); a deleted executable keeps its path only when the
// process shares procmesh's mount namespace. Otherwise Process.ExePath
// keeps the process's own view for logs and ExePathForeign is set. A
// container's processes therefore get a unix:path only where the host sees
// the same file at the same path; tell them apart by unix:sha256 and
// container:id.
//
// Injected code (I17): unix:uid, unix:path and unix:sha256 describe the
// executable file, not the code that runs in the process. Attestation also
// reports, for the registry to refuse unless an entry allows it, a process
// traced at attestation (TracerPid in /proc/PID/status; Process.Traced) and
// one running code its executable did not choose (Process.InjectedCode):
// a non-empty LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH or GCONV_PATH in
// /proc/PID/environ, or an executable file-backed mapping in
// /proc/PID/maps that is neither the executable nor a trusted system
// library. A trusted system library is a regular file owned by root and
// writable by no one else, below a directory of Options.LibraryDirs (ld.so's
// defaults and /etc/ld.so.conf), with every directory from / down to it a
// real directory owned by root and writable by no one else (or sticky).
// A mapped file is looked up by its path in procmesh's mount namespace and
// must be the mapped inode; for a process in another mount namespace (a
// container) that is not, the path and its directories are looked up in
// the process's own view (/proc/PID/root), where the rule rests on
// ownership: a user namespace cannot make its own files root-owned, so a
// rootless container's libraries (owned by its mapped uids) count as
// injected. A deleted file (a library upgraded under a running process) is
// judged by the path it had and its owner through /proc/PID/map_files
// (which needs CAP_SYS_ADMIN; without it, it counts as injected). These
// are checks of the process as it is when attested (callers cache an
// attestation per Fingerprint, which a tracer attaching later does not
// change): /proc/PID/environ is
// the process's own memory (a preloaded constructor can scrub it, which is
// why the maps are judged too), a tracer can detach before attestation
// (TracerPid is then 0: only a connect-time record shows it), and injected
// code can copy itself into anonymous executable memory and unmap its file
// (anonymous executable mappings are not judged: JIT runtimes need them).
// Separate uids and kernel.yama.ptrace_scope >= 2 are what stop a same-uid
// attacker; these checks catch the plain forms.
//
// Malformed /proc content (I10) is parsed or refused, never a panic; the
// parsers are pure functions over bytes and fuzzed.
//
// Cgroup-derived selectors (I15): anyone may name the cgroups of a subtree
// delegated to them (systemd's user@UID.service and every Delegate=yes
// unit, rootless runtimes), so container:id, k8s:pod-uid and systemd:id
// are read only where the runtimes and the system manager put them, and
// only from directories root owns. parseCgroup recognises these layouts
// and no others (<id> 64 lowercase hex, <uid> a pod UID, <uid_> the same
// with "_", <rt> docker, cri-containerd or crio; <slices> a chain of
// systemd slices from the root, each named after its parent as systemd
// nests them: "/system.slice", "/system.slice/system-getty.slice",
// "/user.slice/user-1000.slice", or none):
//
//	container:id  /docker/<id>/…
//	              <slices>/<rt>-<id>.scope/…
//	              /kubepods[/burstable|/besteffort]/pod<uid>/<id>|<rt>-<id>[.scope]/…
//	              /system.slice/containerd.service/kubepods[-<qos>]-pod<uid_>.slice:<rt>:<id>/…
//	k8s:pod-uid   /kubepods[/burstable|/besteffort]/pod<uid>/…
//	              /kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid_>.slice/…
//	              the containerd form above
//	systemd:id    <slices>/<unit>.service, <slices>/<unit>.scope (the process is in the unit's own cgroup)
//
// A unit's or a container's cgroup ends the chain: nothing below
// user@UID.service, a delegated service or a container (which may run its
// own systemd) is read as a unit, container or pod, except the
// container's own id for its whole subtree. Then the Linux attestor finds
// each hierarchy's mount in /proc/self/mountinfo (cgroup2, or the v1
// hierarchy with the line's controllers, mounted with its root) and walks
// from it down to the directory each id was read from, opening each
// directory without following symlinks and checking it is on the same
// cgroup file system: an id is dropped, with a warning, when any of those
// directories, its own included, is not owned by root, or when they cannot
// be checked. A cgroup made by a non-root user is owned by that user
// (cgroup v2 and v1 alike), and nobody but root can hand a directory back
// to root, so everything below a delegated directory is left out. The
// process still attests with its unix selectors: an entry that needs the
// dropped selector does not match. Consequences: a Delegate=yes service
// with User= owns its own cgroup and gets no systemd:id; rootless
// containers (podman, rootless docker), kubelets with another
// --cgroup-root (kind, usernetes), podman's libpod-<id>.scope and plain
// containerd's /<namespace>/<id> get no container:id or k8s:pod-uid.
// Paths in /proc/PID/cgroup are relative to the reader's cgroup namespace:
// procmesh must run in the host's (init) cgroup and mount namespaces
// (docker --cgroupns=host, or no namespaces), or the layouts do not start
// at their root and the directories above procmesh's namespace cannot be
// checked.
//
// # What it leaves out
//
// Root on the node, and anyone able to ptrace the workload (and detach
// before attestation), write its executable or move it between cgroups, is
// out of scope: they can be any process they like; so is a root daemon that
// makes cgroups with names a user chose (a rootful runtime's API) or puts a
// user's process in another container's cgroup. Paths are as seen from
// procmesh's mount namespace (see I16 above). Supplementary groups are read
// from /proc at attestation, not frozen at connect. Reading other users'
// /proc/PID/exe needs root or CAP_SYS_PTRACE. Only Linux is supported;
// elsewhere every call returns ErrUnsupported.
package attest
