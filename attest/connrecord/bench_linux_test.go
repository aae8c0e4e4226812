//go:build linux

package connrecord

import (
	"net"
	"path/filepath"
	"testing"
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
