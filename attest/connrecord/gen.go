package connrecord

// The BPF object is generated from record.c and committed, so building
// procmesh needs no clang; `make generate` regenerates it (clang, and the
// kernel UAPI and libbpf headers from Debian's linux-libc-dev and
// libbpf-dev). BPF_CFLAGS carries the multiarch include directory.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror $BPF_CFLAGS" -target bpfel -type record -type answer recorder record.c
