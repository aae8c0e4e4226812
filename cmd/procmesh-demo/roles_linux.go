//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/procmesh/procmesh/internal/fdpass"
	"golang.org/x/sys/unix"
)

// The demo's programs. The driver copies its own executable twice into
// the run directory: bin/app (the application, registered by uid and path)
// and bin/intruder (not registered); each copy gets a different trailer,
// so they differ in content too. Every process the demo starts is one of
// the two, run as `PROG role NAME` with its parameters in PM_* variables:
//
//	request     connect to PM_SOCK, send GET PM_PATH (plus PM_HEADER), print the answer
//	write-exec  connect, write the request, exec PM_NEXT as read-fd (THREATS I11)
//	read-fd     read the answer on descriptor PM_FD and print it
//	exec-write  connect, exec PM_NEXT as write-fd (THREATS I11)
//	write-fd    send the request on descriptor PM_FD, print the answer
//	fork        connect, start an accomplice sharing the socket (fork-child), exec PM_NEXT as sleep
//	fork-child  once the parent runs PM_NEXT, write the request on descriptor 3 (I11, I12)
//	pass        start pass-child, receive the socket it connected over SCM_RIGHTS,
//	            write the request once the child runs PM_NEXT (I11, I12)
//	pass-child  connect, send the socket on descriptor 3, exec PM_NEXT as sleep
//	hold        connect to PM_SOCK, say "holding FD", sleep
//	steal       start PM_NEXT as hold, take its connected socket with pidfd_getfd, send the request (I12)
//	sleep       sleep (the driver ends it)
//	cgroup      make the cgroup PM_CGROUP in a delegated subtree, move there, then request (I15)
//	trace       start PM_NEXT as request under PTRACE_TRACEME, continue it to its end (I17)
//
// Each prints one JSON result line on stdout.

// result is what a demo client saw of its one request.
type result struct {
	Writer   int    `json:"writer"` // the pid that wrote the request
	Status   int    `json:"status,omitempty"`
	SPIFFEID string `json:"spiffe_id,omitempty"` // the upstream's X-Client-SPIFFE-ID answer header
	Body     string `json:"body,omitempty"`
	Err      string `json:"err,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"` // the writer's cgroup v2 path
}

func runRole(name string) error {
	sock, next := os.Getenv("PM_SOCK"), os.Getenv("PM_NEXT")
	switch name {
	case "request":
		fd, err := fdpass.Dial(sock, true)
		if err != nil {
			return err
		}
		c, err := fileConn(fd)
		if err != nil {
			return err
		}
		return exchange(c)
	case "write-exec":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, []byte(requestText())); err != nil {
			return err
		}
		return execRole(next, "read-fd", "PM_FD="+strconv.Itoa(fd), "PM_WRITER="+strconv.Itoa(os.Getpid()))
	case "exec-write":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		return execRole(next, "write-fd", "PM_FD="+strconv.Itoa(fd))
	case "write-fd":
		fd, _ := strconv.Atoi(os.Getenv("PM_FD"))
		c, err := fileConn(fd)
		if err != nil {
			return err
		}
		return exchange(c)
	case "read-fd":
		fd, _ := strconv.Atoi(os.Getenv("PM_FD"))
		c, err := fileConn(fd)
		if err != nil {
			return err
		}
		writer, _ := strconv.Atoi(os.Getenv("PM_WRITER"))
		return printAnswer(c, writer)
	case "fork":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		child := selfChild("fork-child", os.NewFile(uintptr(fd), "conn"), "PM_PARENT="+strconv.Itoa(os.Getpid()))
		if err := child.Start(); err != nil {
			return err
		}
		return execRole(next, "sleep")
	case "fork-child":
		parent, _ := strconv.Atoi(os.Getenv("PM_PARENT"))
		if err := fdpass.WaitExe(parent, next); err != nil {
			return err
		}
		c, err := fileConn(3)
		if err != nil {
			return err
		}
		return exchange(c)
	case "pass":
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		child := selfChild("pass-child", os.NewFile(uintptr(pair[1]), "pair"))
		if err := child.Start(); err != nil {
			return err
		}
		defer func() { child.Process.Kill(); child.Wait() }()
		fd, err := fdpass.Receive(pair[0])
		if err != nil {
			return err
		}
		if err := fdpass.WaitExe(child.Process.Pid, next); err != nil {
			return err
		}
		c, err := fileConn(fd)
		if err != nil {
			return err
		}
		return exchange(c)
	case "pass-child":
		fd, err := fdpass.Dial(sock, true)
		if err != nil {
			return err
		}
		if err := fdpass.Send(3, fd); err != nil {
			return err
		}
		return execRole(next, "sleep")
	case "hold":
		fd, err := fdpass.Dial(sock, true)
		if err != nil {
			return err
		}
		fmt.Printf("holding %d\n", fd)
		time.Sleep(30 * time.Second)
		return nil
	case "steal":
		return steal(next)
	case "sleep":
		time.Sleep(30 * time.Second)
		return nil
	case "cgroup":
		dir := os.Getenv("PM_CGROUP")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0); err != nil {
			return fmt.Errorf("move into %s: %w", dir, err)
		}
		return runRole("request")
	case "trace":
		return trace(next)
	}
	return fmt.Errorf("unknown role %q", name)
}

// steal starts bin (the application) as hold, so that it connects, then
// takes its connected socket with pidfd_getfd (allowed to a process of the
// same uid that may ptrace it: here its parent, which Yama's scope 1
// allows too) and speaks on it.
func steal(bin string) error {
	cmd := exec.Command(bin, "role", "hold")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var fd int
	if _, err := fmt.Fscanf(bufio.NewReader(out), "holding %d\n", &fd); err != nil {
		return fmt.Errorf("the application did not connect: %w", err)
	}
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pidfd)
	stolen, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd: %w", err)
	}
	c, err := fileConn(stolen)
	if err != nil {
		return err
	}
	return exchange(c)
}

// trace starts bin as a request client traced by this process
// (PTRACE_TRACEME at its exec, as an attacker's launcher does) and
// continues it through every stop until it exits: the registered binary
// runs, connects and writes under this process's control.
func trace(bin string) error {
	runtime.LockOSThread() // ptrace requests come from the tracing thread
	cmd := exec.Command(bin, "role", "request")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	for {
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WALL, nil); err != nil {
			return err
		}
		if ws.Exited() || ws.Signaled() {
			return nil
		}
		if ws.Stopped() {
			sig := ws.StopSignal()
			if sig == syscall.SIGTRAP {
				sig = 0
			}
			if err := syscall.PtraceCont(pid, int(sig)); err != nil {
				return err
			}
		}
	}
}

// requestText is the demo's one request: origin-form, routed by Host (by
// HAProxy's only backend and by procmesh's route alike).
func requestText() string {
	var extra string
	if h := os.Getenv("PM_HEADER"); h != "" {
		for _, line := range strings.Split(h, "\n") {
			extra += line + "\r\n"
		}
	}
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n", os.Getenv("PM_PATH"), upstreamHost, extra)
}

func exchange(c net.Conn) error {
	if _, err := io.WriteString(c, requestText()); err != nil {
		return json.NewEncoder(os.Stdout).Encode(result{Writer: os.Getpid(), Err: err.Error()})
	}
	return printAnswer(c, os.Getpid())
}

func printAnswer(c net.Conn, writer int) error {
	out := json.NewEncoder(os.Stdout)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return out.Encode(result{Writer: writer, Err: err.Error()})
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	r.Body.Close()
	return out.Encode(result{Writer: writer, Status: r.StatusCode, SPIFFEID: r.Header.Get("X-Client-SPIFFE-ID"),
		Body: strings.TrimSpace(string(b)), Cgroup: ownCgroup()})
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "conn")
	defer f.Close()
	return net.FileConn(f)
}

// execRole replaces this process with bin in role, keeping PM_* but PM_FD.
func execRole(bin, role string, env ...string) error {
	return syscall.Exec(bin, []string{bin, "role", role}, append(env, demoEnv()...))
}

// selfChild is this program again in role, with extra as descriptor 3.
func selfChild(role string, extra *os.File, env ...string) *exec.Cmd {
	self, _ := os.Executable()
	cmd := exec.Command(self, "role", role)
	cmd.Env = append(env, demoEnv()...)
	cmd.ExtraFiles = []*os.File{extra}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd
}

func demoEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PM_") && !strings.HasPrefix(kv, "PM_FD=") && !strings.HasPrefix(kv, "PM_WRITER=") {
			env = append(env, kv)
		}
	}
	return env
}

func ownCgroup() string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if cg, ok := strings.CutPrefix(line, "0::"); ok {
			return cg
		}
	}
	return ""
}
