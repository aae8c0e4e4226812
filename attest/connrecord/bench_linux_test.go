//go:build linux

package connrecord

import (
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkConnectAccept is a Unix connect and accept without a record
// being looked up; with the program attached it also pays for the record
// the kernel makes at connect().
func BenchmarkConnectAccept(b *testing.B) {
	for _, attached := range []bool{false, true} {
		name := "detached"
		if attached {
			name = "attached"
		}
		b.Run(name, func(b *testing.B) {
			if attached {
				r, err := Open(Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
			}
			benchConnect(b, nil)
		})
	}
	b.Run("attached+lookup", func(b *testing.B) {
		r, err := Open(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		benchConnect(b, r)
	})
	// Other processes' idle Unix sockets in the namespace: the sock_diag
	// lookup used before walked them all (0.64 ms with 18,000 sockets);
	// the getsockname answer does not.
	b.Run("attached+lookup, 8000 other sockets", func(b *testing.B) {
		for range 4000 {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Skipf("socketpair: %v (file descriptor limit?)", err)
			}
			defer unix.Close(fds[0])
			defer unix.Close(fds[1])
		}
		r, err := Open(Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		benchConnect(b, r)
	})
}

func benchConnect(b *testing.B, r *Recorder) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(b.TempDir(), "s"), Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().(*net.UnixAddr)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.DialUnix("unix", nil, addr)
		if err != nil {
			b.Fatal(err)
		}
		a, err := l.AcceptUnix()
		if err != nil {
			b.Fatal(err)
		}
		if r != nil {
			if _, err := r.Lookup(a); err != nil {
				b.Fatal(err)
			}
		}
		a.Close()
		c.Close()
	}
}
