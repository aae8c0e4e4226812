// SPDX-License-Identifier: (MIT OR GPL-2.0)
//go:build ignore

// The connect-time record (THREATS I11): a cgroup/connect_unix program
// that runs in the connecting task at connect(2) on an AF_UNIX socket and
// stores who that task was, keyed by the inode of the connecting socket.
// procmesh finds the record of a connection it accepted through the peer
// inode sock_diag reports (UNIX_DIAG_PEER), and so learns which program
// ran at connect() instead of reading /proc afterwards.
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

SEC("cgroup/connect_unix")
int record_connect(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct unix_sock *us = bpf_skc_to_unix_sock(sk);
	if (!us)
		return 1;
	struct socket *sock = BPF_CORE_READ(us, sk.sk_socket);
	if (!sock)
		return 1;
	__u64 ino = BPF_CORE_READ((struct socket_alloc *)sock, vfs_inode.i_ino);
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

char __license[] SEC("license") = "Dual MIT/GPL";
