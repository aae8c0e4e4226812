package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/procmesh/procmesh/internal/fdpass"
	"golang.org/x/sys/unix"
)

// The attacker's programs for THREATS I11 and I12, run as client modes of
// the test binary (runClient). Each is what REDTEAM.md finding 1 did with
// C programs: a connection made by one program image, written by another.
//
//	write-exec  connect, write a request, exec PM_NEXT (which reads the answer: read-fd)
//	pass        a child connects, sends the socket here over SCM_RIGHTS and
//	            execs PM_NEXT (pass-child); this process writes the request
//	fork        connect, start a child that shares the socket (fork-child),
//	            exec PM_NEXT; the child writes once this process runs PM_NEXT
//	give        connect as this (registered) process, make PM_FIRST requests
//	            of PM_PROTO, then give the socket to PM_NEXT (PM_HOW: inherit
//	            across fork+exec, or scm: SCM_RIGHTS), which speaks PM_PROTO
//	            on it (speak)
func runAttacker(mode string) error {
	sock, target, next := os.Getenv("PM_SOCK"), os.Getenv("PM_URL"), os.Getenv("PM_NEXT")
	out := json.NewEncoder(os.Stdout)
	switch mode {
	case "write-exec":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, []byte(getRequest(target))); err != nil {
			return err
		}
		return execAs(next, "read-fd", "PM_FD="+strconv.Itoa(fd))
	case "read-fd":
		fd, _ := strconv.Atoi(os.Getenv("PM_FD"))
		c, err := net.FileConn(os.NewFile(uintptr(fd), "inherited"))
		if err != nil {
			return err
		}
		return readAnswer(c, out)
	case "pass":
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		child := childOf("pass-child", os.NewFile(uintptr(pair[1]), "pair"))
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
		c, err := net.FileConn(os.NewFile(uintptr(fd), "passed"))
		if err != nil {
			return err
		}
		io.WriteString(c, getRequest(target))
		return readAnswer(c, out)
	case "pass-child":
		fd, err := fdpass.Dial(sock, true)
		if err != nil {
			return err
		}
		if err := fdpass.Send(3, fd); err != nil {
			return err
		}
		return execAs(next, "sleep")
	case "fork":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		child := childOf("fork-child", os.NewFile(uintptr(fd), "conn"))
		child.Env = append(child.Env, "PM_PARENT="+strconv.Itoa(os.Getpid()))
		if err := child.Start(); err != nil {
			return err
		}
		return execAs(next, "sleep")
	case "fork-child":
		parent, _ := strconv.Atoi(os.Getenv("PM_PARENT"))
		if err := fdpass.WaitExe(parent, next); err != nil {
			return err
		}
		c, err := net.FileConn(os.NewFile(3, "conn"))
		if err != nil {
			return err
		}
		io.WriteString(c, getRequest(target))
		return readAnswer(c, out)
	case "sleep":
		time.Sleep(time.Second)
		return nil
	case "give":
		return give(sock, target, next, out)
	case "speak":
		c, err := inheritedConn()
		if err != nil {
			return err
		}
		return speak(c, os.Getenv("PM_PROTO"), target, out)
	}
	return fmt.Errorf("unknown attacker mode %q", mode)
}

// give connects as this process, makes PM_FIRST requests itself, and
// hands the connection to PM_NEXT.
func give(sock, target, next string, out *json.Encoder) error {
	proto := os.Getenv("PM_PROTO")
	c, err := net.Dial("unix", sock)
	if err != nil {
		return err
	}
	first, _ := strconv.Atoi(os.Getenv("PM_FIRST"))
	for i := 0; i < first; i++ {
		if err := speak(c, proto, target, out); err != nil {
			return err
		}
	}
	if proto == "tunnel" {
		// The tunnel is open as this process; the other writes in it.
		u, _ := url.Parse(target)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host, u.Host)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("CONNECT as the connecting process: %v %v", resp, err)
		}
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		return err
	}
	cmd := childOf("speak", nil)
	cmd.Path = next
	if os.Getenv("PM_HOW") == "scm" {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(pair[1]), "pair")}
		cmd.Env = append(cmd.Env, "PM_HOW=scm")
		if err := cmd.Start(); err != nil {
			return err
		}
		if err := fdpass.Send(pair[0], int(f.Fd())); err != nil {
			return err
		}
	} else {
		cmd.ExtraFiles = []*os.File{f}
		if err := cmd.Start(); err != nil {
			return err
		}
	}
	return cmd.Wait()
}

// inheritedConn is the connection handed to this process: descriptor 3
// (inherited), or one received on descriptor 3 (PM_HOW=scm).
func inheritedConn() (net.Conn, error) {
	fd := 3
	if os.Getenv("PM_HOW") == "scm" {
		var err error
		if fd, err = fdpass.Receive(3); err != nil {
			return nil, err
		}
	}
	return net.FileConn(os.NewFile(uintptr(fd), "given"))
}

// speak makes one request of proto on c and prints what came back.
func speak(c net.Conn, proto, target string, out *json.Encoder) error {
	switch proto {
	case "get":
		io.WriteString(c, getRequest(target))
		return readAnswer(c, out)
	case "chunked":
		// A chunked body: the net/http path, not the fast path.
		u, _ := url.Parse(target)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", u.RequestURI(), u.Host)
		return readAnswer(c, out)
	case "h2c":
		used := false
		tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
			if used {
				return nil, errors.New("one connection only")
			}
			used = true
			return c, nil
		}}
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(target)
		if err != nil {
			return out.Encode(clientResult{Err: err.Error()})
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return out.Encode(clientResult{Status: resp.StatusCode, Proto: resp.Proto, Body: string(b)})
	case "tunnel", "raw":
		// Inside an open tunnel, or on a raw socket: plain bytes.
		io.WriteString(c, getRequest(target))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return out.Encode(clientResult{Body: string(b)})
	}
	return fmt.Errorf("unknown protocol %q", proto)
}

func getRequest(target string) string {
	u, _ := url.Parse(target)
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)
}

func readAnswer(c net.Conn, out *json.Encoder) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return out.Encode(clientResult{Err: err.Error()})
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	return out.Encode(clientResult{Status: r.StatusCode, Body: string(b)})
}

// execAs replaces this process with bin in the given client mode.
func execAs(bin, mode string, env ...string) error {
	env = append([]string{"GORACE=atexit_sleep_ms=0", "PROCMESH_TEST_CLIENT=" + mode}, append(env, passEnv()...)...)
	return syscall.Exec(bin, []string{bin, "-test.run=^$"}, env)
}

// childOf starts this binary again in mode, with extra as descriptor 3.
func childOf(mode string, extra *os.File) *exec.Cmd {
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append([]string{"GORACE=atexit_sleep_ms=0", "PROCMESH_TEST_CLIENT=" + mode}, passEnv()...)
	if extra != nil {
		cmd.ExtraFiles = []*os.File{extra}
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd
}

func passEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PM_") && !strings.HasPrefix(kv, "PM_FD=") {
			env = append(env, kv)
		}
	}
	return env
}
