//go:build linux

package credread

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as a second writer on an inherited
// socket (descriptor 3).
const envWrite = "PROCMESH_CREDREAD_WRITE"

func TestMain(m *testing.M) {
	if s := os.Getenv(envWrite); s != "" {
		if _, err := unix.Write(3, []byte(s)); err != nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// accepted returns the client and the accepted end of a connection to a
// listener with SO_PASSCRED, as procmesh's listeners are.
func accepted(t *testing.T) (client *net.UnixConn, fd int) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	raw, _ := l.SyscallConn()
	var serr error
	raw.Control(func(fd uintptr) { serr = SetPassCred(int(fd)) })
	if serr != nil {
		t.Fatal(serr)
	}
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	f, err := a.File() // a blocking duplicate, for the test's plain reads
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return c, int(f.Fd())
}

// Each read returns one writer's bytes with that writer's pid; a child
// that inherited the socket is told apart from its parent (THREATS I12).
func TestReadAttributesEachWrite(t *testing.T) {
	c, fd := accepted(t)
	cf, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	defer cf.Close()
	c.Write([]byte("parent-1"))
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envWrite+"=child")
	cmd.ExtraFiles = []*os.File{cf}
	if err := cmd.Run(); err != nil {
		t.Fatalf("child writer: %v", err)
	}
	c.Write([]byte("parent-2"))
	time.Sleep(10 * time.Millisecond) // all three writes queued before the first read
	var r Reader
	buf := make([]byte, 1024)
	want := []struct {
		data string
		pid  int
	}{{"parent-1", os.Getpid()}, {"child", cmd.Process.Pid}, {"parent-2", os.Getpid()}}
	for _, w := range want {
		n, pid, err := r.Read(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != w.data || int(pid) != w.pid {
			t.Fatalf("read %q from pid %d, want %q from pid %d (the kernel must not merge writers)", buf[:n], pid, w.data, w.pid)
		}
	}
}

// Descriptors a client sends are never installed in the reader.
func TestReadDropsSentDescriptors(t *testing.T) {
	c, fd := accepted(t)
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := openFDs(t)
	if _, _, err := c.WriteMsgUnix([]byte("x"), unix.UnixRights(int(f.Fd()), int(f.Fd()), int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	var r Reader
	buf := make([]byte, 16)
	n, pid, err := r.Read(fd, buf)
	if err != nil || n != 1 || int(pid) != os.Getpid() {
		t.Fatalf("Read = %d, %d, %v", n, pid, err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("open descriptors went from %d to %d: sent descriptors were installed", before, after)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
