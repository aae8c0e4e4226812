//go:build linux

package attest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// helperEnv is the environment with the helper mode set to mode (syscall.Exec
// does not drop duplicate keys, and the first would win).
func helperEnv(mode string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, envMode+"=") })
	return append(env, envMode+"="+mode)
}

// child is a running helper process and, when it connected, the server end
// of its connection.
type child struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	conn   *net.UnixConn
	reaped bool
}

type spawnOpts struct {
	exe    string // default bins.a
	args   []string
	mode   string // default "connect"
	cred   *syscall.Credential
	env    []string
	noConn bool   // the mode does not connect (wait)
	cgroup string // cgroup v2 directory to start the helper in (CLONE_INTO_CGROUP)
}

var sockSeq atomic.Int64

// spawn starts a helper and, unless noConn, accepts its connection.
func spawn(t testing.TB, o spawnOpts) *child {
	t.Helper()
	c, ln := start(t, o)
	if ln == nil {
		return c
	}
	defer ln.Close()
	if err := ln.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatalf("accept from helper %s: %v", o.mode, err)
	}
	c.conn = conn
	t.Cleanup(func() { conn.Close() })
	return c
}

// start starts a helper and returns the listener it will connect to (nil
// when noConn).
func start(t testing.TB, o spawnOpts) (*child, *net.UnixListener) {
	t.Helper()
	if o.exe == "" {
		o.exe = bins.a
	}
	if o.mode == "" {
		o.mode = "connect"
	}
	var ln *net.UnixListener
	env := helperEnv(o.mode)
	if !o.noConn {
		sock := filepath.Join(bins.dir, "s"+strconv.FormatInt(sockSeq.Add(1), 10)+".sock")
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sock, 0o777); err != nil {
			t.Fatal(err)
		}
		env = append(env, envSock+"="+sock)
	}
	cmd := exec.Command(o.exe, o.args...)
	cmd.Env = append(env, o.env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	if o.cgroup != "" {
		dir, err := os.Open(o.cgroup)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	t.Cleanup(c.kill)
	return c, ln
}

func (c *child) pid() int32 { return int32(c.cmd.Process.Pid) }

// kill kills and reaps the helper; it is idempotent.
func (c *child) kill() {
	if c.reaped {
		return
	}
	c.reaped = true
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// line reads the next line the helper (or what it exec'd) printed.
func (c *child) line() string {
	c.t.Helper()
	s, err := c.stdout.ReadString('\n')
	if err != nil {
		c.t.Fatalf("helper pid %d: read stdout: %v", c.pid(), err)
	}
	return strings.TrimSuffix(s, "\n")
}

// peer reads the child's Peer with or without a pidfd.
func (c *child) peer(usePIDFD bool) *Peer {
	c.t.Helper()
	p, err := ReadPeer(c.conn, usePIDFD)
	if err != nil {
		c.t.Fatalf("ReadPeer: %v", err)
	}
	c.t.Cleanup(func() { p.Close() })
	return p
}

// spawnAtPID kills and reaps old, then starts a "wait" helper from exe that
// gets old's PID, by writing PID-1 to /proc/sys/kernel/ns_last_pid. Other
// processes on the node may take the PID first, so it retries; failing all
// tries is a test failure, not a skip.
//
// It returns nil when another process took the PID first (a parallel test
// package forks all the time): the caller starts over with a new victim.
func spawnAtPID(t testing.TB, old *child, exe string) *child {
	t.Helper()
	const nsLastPID = "/proc/sys/kernel/ns_last_pid"
	if _, err := os.Stat(nsLastPID); err != nil {
		t.Skipf("cannot arrange PID reuse: %v", err)
	}
	pid := old.pid()
	old.kill()
	const tries = 200
	for i := 0; i < tries; i++ {
		if err := os.WriteFile(nsLastPID, []byte(strconv.Itoa(int(pid-1))), 0); err != nil {
			t.Fatalf("cannot arrange PID reuse: write %s: %v", nsLastPID, err)
		}
		c, _ := start(t, spawnOpts{exe: exe, mode: "wait", noConn: true})
		if c.pid() == pid {
			if got := c.line(); got != "ready "+strconv.Itoa(int(pid)) {
				t.Fatalf("reused PID helper said %q", got)
			}
			return c
		}
		c.kill()
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(int(pid))); err == nil {
		return nil // another process holds the PID now
	}
	t.Fatalf("PID %d not reused after %d tries though it is free (forks elsewhere too fast?)", pid, tries)
	return nil
}

// waitTickAfter waits until CLOCK_BOOTTIME has passed tick, so a process
// started now has a start time greater than tick.
func waitTickAfter(t testing.TB, tick uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for bootTicks() <= tick {
		if time.Now().After(deadline) {
			t.Fatalf("boot clock stuck at tick %d", tick)
		}
		time.Sleep(time.Millisecond)
	}
}

// statusGroups returns the Groups of pid, read independently of parseStatus.
func statusGroups(t testing.TB, pid int32) []uint32 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("Groups:")); ok {
			for _, f := range strings.Fields(string(rest)) {
				n, err := strconv.ParseUint(f, 10, 32)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, uint32(n))
			}
		}
	}
	return out
}
