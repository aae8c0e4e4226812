//go:build linux

package connrecord

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as a client: connect to the socket
// named by envSock with a descriptor that survives exec, then exec
// /bin/sleep, so the connection outlives the image that made it.
const envSock = "PROCMESH_CONNRECORD_SOCK"

func TestMain(m *testing.M) {
	if path := os.Getenv(envSock); path != "" {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0) // no CLOEXEC
		if err == nil {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		}
		if err != nil {
			os.Exit(3)
		}
		_ = syscall.Exec("/bin/sleep", []string{"sleep", "5"}, os.Environ())
		os.Exit(4)
	}
	os.Exit(m.Run())
}

func openOrFail(t *testing.T) *Recorder {
	t.Helper()
	r, err := Open(Options{})
	if err != nil {
		t.Fatalf("Open: %v (this kernel is documented to support cgroup/connect_unix)", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestCgroupV2Root(t *testing.T) {
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	os.WriteFile(mi, []byte(strings.Join([]string{
		"25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw",
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw",
		"42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
	}, "\n")), 0o600)
	got, err := CgroupV2Root(mi)
	if err != nil || got != "/sys/fs/cgroup/unified" {
		t.Fatalf("CgroupV2Root = %q, %v; want the hybrid layout's /sys/fs/cgroup/unified", got, err)
	}
	os.WriteFile(mi, []byte("42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"), 0o600)
	if _, err := CgroupV2Root(mi); err == nil || !strings.Contains(err.Error(), "no cgroup v2") {
		t.Fatalf("v1 only: err = %v, want one that says no cgroup v2 hierarchy is mounted", err)
	}
	os.WriteFile(mi, []byte("41 31 0:38 / /mnt/cg\\040two rw - cgroup2 cgroup2 rw\n"), 0o600)
	if got, _ := CgroupV2Root(mi); got != "/mnt/cg two" {
		t.Fatalf("escaped mount point: got %q", got)
	}
}

// The record names the program that ran at connect(), not the one the
// process runs when procmesh looks (THREATS I11), for a client in
// procmesh's network namespace and for one in a namespace of its own (a
// container, a pod): the connection's server end is then created in the
// client's namespace, where sock_diag could not see it.
func TestRecordSurvivesExec(t *testing.T) {
	r := openOrFail(t)
	t.Run("same netns", func(t *testing.T) { recordSurvivesExec(t, r, 0) })
	t.Run("own netns", func(t *testing.T) { recordSurvivesExec(t, r, syscall.CLONE_NEWNET) })
	t.Run("own netns again", func(t *testing.T) { recordSurvivesExec(t, r, syscall.CLONE_NEWNET) })
}

func recordSurvivesExec(t *testing.T, r *Recorder, cloneflags uintptr) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	self, _ := os.Executable()
	var selfSt, sleepSt unix.Stat_t
	if err := unix.Stat(self, &selfSt); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/bin/sleep", &sleepSt); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envSock+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	a, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// Wait until the child runs sleep: the exec race, lost by /proc.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st unix.Stat_t
		if unix.Stat("/proc/"+itoa(cmd.Process.Pid)+"/exe", &st) == nil && st.Ino == sleepSt.Ino {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child never exec'd /bin/sleep")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec, err := r.Lookup(a)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if rec.PID != int32(cmd.Process.Pid) {
		t.Errorf("record pid %d, want the connecting child %d", rec.PID, cmd.Process.Pid)
	}
	if rec.ExeDev != uint64(selfSt.Dev) || rec.ExeIno != selfSt.Ino {
		t.Errorf("record exe %d:%d, want the image that connected (%d:%d), not /bin/sleep (%d:%d)",
			rec.ExeDev, rec.ExeIno, uint64(selfSt.Dev), selfSt.Ino, uint64(sleepSt.Dev), sleepSt.Ino)
	}
	if rec.Traced {
		t.Error("record says traced; nothing traced the child")
	}
	// Each connection is attested once: the record is consumed.
	if _, err := r.Lookup(a); !errors.Is(err, ErrNoRecord) {
		t.Errorf("second Lookup: err = %v, want ErrNoRecord", err)
	}
}

// A connection made before the program was attached has no record.
func TestNoRecordBeforeAttach(t *testing.T) {
	dir := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := openOrFail(t)
	if _, err := r.Lookup(a); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Lookup = %v, want ErrNoRecord", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestCloseDuringLookups: Close while connections are being looked up (a
// shutdown with connections still arriving) waits for the lookups using
// the map, and later ones get ErrClosed, never a freed descriptor.
func TestCloseDuringLookups(t *testing.T) {
	r, err := Open(Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	dir := t.TempDir()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error)
	go func() {
		for {
			c, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
			if err != nil {
				done <- err
				return
			}
			a, err := l.AcceptUnix()
			if err != nil {
				c.Close()
				done <- err
				return
			}
			_, err = r.Lookup(a)
			a.Close()
			c.Close()
			if errors.Is(err, ErrClosed) {
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("lookups during Close: %v", err)
	}
}

// A client cannot hand procmesh a record of its choosing: it may bind
// its socket to any name, one shaped like the program's answer included,
// but procmesh reads the answer from its own socket's address, which
// only the kernel (the listener's path) or the program writes.
func TestLookupIgnoresClientBoundName(t *testing.T) {
	r := openOrFail(t)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	forged := recorderAnswer{Found: 1, Ino: 1, R: recorderRecord{Tgid: 1, ExeDev: 1, ExeIno: 1}}
	b, err := binary.Append(nil, binary.NativeEndian, &forged)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: "@" + string(b[1:])}); err != nil {
		t.Fatalf("bind the forged name: %v", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: l.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	a, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rec, err := r.Lookup(a)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if rec.PID != int32(os.Getpid()) {
		t.Fatalf("record names pid %d (the forged name said 1), want this process %d", rec.PID, os.Getpid())
	}
}

// localAnswer's field offsets are those of the struct bpf2go generated
// from record.c.
func TestAnswerLayout(t *testing.T) {
	var a recorderAnswer
	for name, got := range map[string]uintptr{
		"Found": unsafe.Offsetof(a.Found), "Ino": unsafe.Offsetof(a.Ino), "R": unsafe.Offsetof(a.R),
		"R.Ptrace": unsafe.Offsetof(a.R.Ptrace), "R.ExeDev": unsafe.Offsetof(a.R.ExeDev),
		"R.ExeIno": unsafe.Offsetof(a.R.ExeIno), "R.Cgroup": unsafe.Offsetof(a.R.Cgroup),
		"R.TimeNs": unsafe.Offsetof(a.R.TimeNs), "size": unsafe.Sizeof(a),
	} {
		want := map[string]uintptr{"Found": 1, "Ino": 8, "R": 16, "R.Ptrace": 4, "R.ExeDev": 8,
			"R.ExeIno": 16, "R.Cgroup": 24, "R.TimeNs": 32, "size": 56}[name]
		if got != want {
			t.Errorf("%s at %d, localAnswer reads it at %d", name, got, want)
		}
	}
}
