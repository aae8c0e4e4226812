package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procmesh/procmesh/internal/logtest"
)

// TestSystemdNotify: `procmesh run` under a Type=notify unit sends READY=1
// to $NOTIFY_SOCKET only once its socket accepts connections, and
// STOPPING=1 when SIGTERM starts the drain.
func TestSystemdNotify(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	// -race: the race build make test compiled serves, not a second
	// compile of every dependency.
	build := exec.Command("go", "build", "-race", "-o", bin+"/", "./cmd/procmesh")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	path, dir := writeConfig(t, "")
	notify := filepath.Join(dir, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(filepath.Join(bin, "procmesh"), "run", "-config", path)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	read := func() string {
		ln.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 256)
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v\n%s", err, out.String())
		}
		return string(buf[:n])
	}
	if msg := read(); msg != "READY=1" {
		t.Fatalf("first notification %q; want READY=1", msg)
	}
	c, err := net.Dial("unix", filepath.Join(dir, "egress.sock"))
	if err != nil {
		t.Fatalf("READY=1 came before the socket accepts: %v", err)
	}
	c.Close()
	// A SIGHUP reload: RELOADING=1 with the monotonic time, then READY=1.
	cmd.Process.Signal(syscall.SIGHUP)
	if msg := read(); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`).MatchString(msg) {
		t.Fatalf("notification after SIGHUP %q; want RELOADING=1 and MONOTONIC_USEC", msg)
	}
	if msg := read(); msg != "READY=1" {
		t.Fatalf("notification after the reload %q; want READY=1", msg)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if msg := read(); msg != "STOPPING=1" {
		t.Fatalf("notification after SIGTERM %q; want STOPPING=1", msg)
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "procmesh stopped") {
		t.Fatalf("procmesh after SIGTERM: %v\n%s", err, out.String())
	}
}
