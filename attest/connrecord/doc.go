// Package connrecord is the kernel's record of who connected (THREATS
// I11): a BPF program of type cgroup/connect_unix, attached at the root of
// the cgroup v2 hierarchy, runs in every task that calls connect(2) on a
// Unix socket and stores, keyed by the connecting socket's inode, the
// task's process id, the device and inode of the executable it runs, its
// ptrace state and its cgroup — at that moment, not when procmesh gets to
// read /proc. A second program, of type cgroup/getsockname_unix, answers
// procmesh's own getsockname(2) on a connection it accepted with the
// record of the peer, the socket that called connect(); Recorder.Lookup
// reads it there and removes it from the map. One system call, whatever
// network namespace the client is in (the kernel creates the server end
// of a connection in the client's namespace), and no walk of the
// namespace's sockets (sock_diag's lookup by inode, used before, walked
// them all: any process could slow attestation by holding many).
//
// With the record, a process that connects and then execs another program
// (itself, or a child that shares the socket) cannot pass for the program
// it exec'd: the attestor compares the executable that runs when it
// attests with the one recorded at connect().
//
// Open needs Linux 6.7 or later (BPF_CGROUP_UNIX_CONNECT and
// GETSOCKNAME, the bpf_sock_addr_set_sun_path kfunc), CAP_BPF and
// CAP_NET_ADMIN (or root), BTF at /sys/kernel/btf/vmlinux and a mounted
// cgroup v2 hierarchy (also in the hybrid layout); it checks the whole
// chain with a connection to itself before it returns, and fails with an
// error that names the missing piece otherwise. Record ids are those of
// the initial PID namespace, so procmesh must run in it (hostPID).
//
// It leaves out what to do with a record: the attest and workload
// packages decide.
package connrecord
