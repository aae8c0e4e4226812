// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

// The connect-time record (THREATS I11): a cgroup/connect_unix program
// that runs in the connecting task at connect(2) on an AF_UNIX socket and
// stores who that task was, keyed by the inode of the connecting socket.
// A cgroup/getsockname_unix program hands procmesh the record of a
// connection it accepted, as the answer to its getsockname(2), and so
// procmesh learns which program ran at connect() instead of reading /proc
// afterwards.
//
// It records every Unix-socket connect on the node: the hook runs before
// the kernel resolves the path, and a socket has many names (hard links,
// bind mounts, /proc/PID/root/..., the path inside a container), so a
// filter on procmesh's paths would miss real clients. The program never
// refuses a connect.
//
// Built with CO-RE against the running kernel's BTF: the structs below
// declare only the fields read, and libbpf-style relocations find their
// offsets at load time (no vmlinux.h).

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct super_block {
	__u32 s_dev; /* dev_t */
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct {
	int tgid;
	unsigned int ptrace;
	struct mm_struct *mm;
	struct task_struct *group_leader;
} __attribute__((preserve_access_index));

struct socket {
	int state;
} __attribute__((preserve_access_index));

/* The inode of a socket sits next to it in struct socket_alloc. */
struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
} __attribute__((preserve_access_index));

struct sock {
	struct socket *sk_socket;
} __attribute__((preserve_access_index));

struct unix_sock {
	struct sock sk;
	struct sock *peer;
} __attribute__((preserve_access_index));

/* The kernel's context of a sock_addr program, for the kfunc below. */
struct bpf_sock_addr_kern {
	struct sock *sk;
} __attribute__((preserve_access_index));

/* One connect: kept in step with Record in record_linux.go. */
struct record {
	__u32 tgid;     /* in the initial PID namespace */
	__u32 ptrace;   /* ptrace flags of the task or its group leader: non-zero while traced */
	__u64 exe_dev;  /* kernel dev_t of mm->exe_file's superblock */
	__u64 exe_ino;  /* inode of mm->exe_file */
	__u64 cgroup;   /* cgroup v2 id */
	__u64 time_ns;  /* bpf_ktime_get_ns, CLOCK_MONOTONIC */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* set from Go at load */
	__type(key, __u64);         /* inode of the connecting socket */
	__type(value, struct record);
} records SEC(".maps");

/* ctx_unix_sock is the Unix socket a sock_addr program runs for, or 0. */
static __always_inline struct unix_sock *ctx_unix_sock(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 0;
	return bpf_skc_to_unix_sock(sk);
}

/* sock_ino is the inode of sk's socket, the records' key; 0 for a socket
 * without one (orphaned: its file was closed). */
static __always_inline __u64 sock_ino(struct sock *sk)
{
	struct socket *sock = BPF_CORE_READ(sk, sk_socket);
	if (!sock)
		return 0;
	return BPF_CORE_READ((struct socket_alloc *)sock, vfs_inode.i_ino);
}

SEC("cgroup/connect_unix")
int record_connect(struct bpf_sock_addr *ctx)
{
	struct unix_sock *us = ctx_unix_sock(ctx);
	if (!us)
		return 1;
	__u64 ino = sock_ino(&us->sk);
	if (!ino)
		return 1;

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct record r = {};
	r.tgid = bpf_get_current_pid_tgid() >> 32;
	/* The connecting thread, or the thread group's leader: a tracer
	 * (PTRACE_TRACEME, PTRACE_ATTACH to the pid) traces the leader, and
	 * the program's connect() may come from any of its threads. */
	r.ptrace = BPF_CORE_READ(task, ptrace) | BPF_CORE_READ(task, group_leader, ptrace);
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	if (exe) {
		r.exe_ino = BPF_CORE_READ(exe, f_inode, i_ino);
		r.exe_dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
	}
	r.cgroup = bpf_get_current_cgroup_id();
	r.time_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&records, &ino, &r, BPF_ANY);
	return 1;
}

/* The answer to procmesh's getsockname(2) on a connection it accepted,
 * in place of the listener's path the connection carries: kept in step
 * with recordAnswer in record_linux.go. Only the kernel writes this
 * address (a client cannot name procmesh's socket), so its shape is
 * enough to know it. */
struct answer {
	__u8 zero;  /* 0: the form of an abstract name; procmesh's sockets are paths */
	__u8 found; /* always 1 */
	__u8 pad[6];
	__u64 ino;  /* the record's key: the connecting socket's inode */
	struct record r;
};

/* Keeps struct answer in the BTF, for bpf2go's Go type. */
const struct answer *unused_answer __attribute__((unused));

/* Set at load: the process whose calls are answered, by its tgid in the
 * initial PID namespace. */
volatile const __u32 procmesh_tgid = 0;

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern int bpf_sock_addr_set_sun_path(struct bpf_sock_addr_kern *sa_kern,
				      const __u8 *sun_path, __u32 sun_path__sz) __ksym;

/* getsockname(2) by procmesh on a connected Unix socket whose peer has a
 * record (a connection procmesh accepted: the peer called connect()).
 * The record is found by the peer socket's inode: no walk of the
 * namespace's sockets (as sock_diag's lookup by inode did), and whatever
 * network namespace the client is in. It is left in the map: procmesh
 * deletes it once read (Go's accept also asks getsockname, for the
 * connection's local address, which then carries the answer too). Other
 * processes' calls, and sockets without such a peer, are left alone. */
SEC("cgroup/getsockname_unix")
int answer_getsockname(struct bpf_sock_addr *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != procmesh_tgid)
		return 1;
	struct unix_sock *us = ctx_unix_sock(ctx);
	if (!us)
		return 1;
	struct sock *peer = BPF_CORE_READ(us, peer);
	if (!peer)
		return 1;
	__u64 ino = sock_ino(peer);
	if (!ino)
		return 1;
	struct record *r = bpf_map_lookup_elem(&records, &ino);
	if (!r)
		return 1;
	struct answer a = {};
	a.found = 1;
	a.ino = ino;
	a.r = *r;
	bpf_sock_addr_set_sun_path(bpf_cast_to_kern_ctx(ctx), (const __u8 *)&a, sizeof(a));
	return 1;
}

char __license[] SEC("license") = "Dual MIT/GPL";
