package rawio

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// echoEnv makes the test binary a slow echo server on the Unix socket it
// names: it answers each byte after a millisecond, so the benchmark's
// process goes idle between its reads, as a proxy between requests does.
const echoEnv = "RAWIO_SLOW_ECHO"

func TestMain(m *testing.M) {
	if path := os.Getenv(echoEnv); path != "" {
		slowEcho(path)
		return
	}
	os.Exit(m.Run())
}

func slowEcho(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		os.Exit(2)
	}
	c, err := ln.Accept()
	if err != nil {
		os.Exit(2)
	}
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			os.Exit(0)
		}
		time.Sleep(time.Millisecond)
		if _, err := c.Write(b); err != nil {
			os.Exit(0)
		}
	}
}

// BenchmarkIdleRoundTrip sends a byte to another process and waits a
// millisecond for it to come back, through package net and through a
// wrapped connection. ctxsw/op counts this process's context switches,
// every thread's (getrusage): with package net's system calls the runtime
// wakes its monitor thread (sysmon) at each read and write after an idle
// wait, and that thread then sleeps and wakes in 20 µs steps until the
// process is idle again; raw system calls do not wake it.
func BenchmarkIdleRoundTrip(b *testing.B) {
	for _, mode := range []string{"net", "raw"} {
		b.Run(mode, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "echo")
			exe, err := os.Executable()
			if err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), echoEnv+"="+path)
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer cmd.Wait()
			var c net.Conn
			for i := 0; i < 200; i++ {
				if c, err = net.Dial("unix", path); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if mode == "raw" {
				c = Wrap(c)
			}
			buf := []byte{'x'}
			var before, after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			sw := (after.Nvcsw - before.Nvcsw) + (after.Nivcsw - before.Nivcsw)
			b.ReportMetric(float64(sw)/float64(b.N), "ctxsw/op")
			cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(b.N)
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3, "cpu-µs/op")
		})
	}
}

// BenchmarkWrite is a busy connection's cost: small writes back to back
// to a peer that drains them, through package net and wrapped.
func BenchmarkWrite(b *testing.B) {
	for _, mode := range []string{"net", "raw"} {
		b.Run(mode, func(b *testing.B) {
			a, peer := pipe(b, "unix")
			defer a.Close()
			defer peer.Close()
			go io.Copy(io.Discard, peer)
			w := a
			if mode == "net" {
				w = a.(*Conn).NetConn()
			}
			msg := make([]byte, 128)
			b.SetBytes(int64(len(msg)))
			for range b.N {
				if _, err := w.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
