// Package injecttest builds, for tests of THREATS I17, a small dynamically
// linked C client (the "registered binary") and a shared object to
// LD_PRELOAD into it whose constructor scrubs LD_PRELOAD from the process's
// environment, as an attacker's would. It needs gcc; tests that use it fail
// without it (install gcc), they are not skipped.
package injecttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// victimC connects to the Unix socket argv[1] (default: the value of the
// environment variable SOCK_ENV, set when it is built), writes one byte,
// prints "ready", and then waits for its stdin to reach EOF.
const victimC = `#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <stdlib.h>

int main(int argc, char **argv) {
	const char *path = argc > 1 ? argv[1] : getenv(SOCK_ENV);
	if (path == NULL) return 2;
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a;
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	strncpy(a.sun_path, path, sizeof a.sun_path - 1);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 3; }
	if (write(s, "x", 1) != 1) return 4;
	printf("ready\n");
	fflush(stdout);
	char b;
	while (read(0, &b, 1) > 0) {}
	return 0;
}
`

// preloadC's constructor overwrites its own LD_PRELOAD= entry in place, so
// /proc/PID/environ (the process's memory) no longer shows it.
const preloadC = `#include <string.h>
extern char **environ;

__attribute__((constructor)) static void scrub(void) {
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) == 0)
			memset(*e, 'X', strlen(*e));
}
`

// Fixtures are the built files, world-readable and executable.
type Fixtures struct {
	Victim  string // the client: "victim [SOCKET]"
	Preload string // the shared object for LD_PRELOAD
}

// Build compiles the fixtures into a new directory (mode 0755) under dir.
// The victim started without an argument connects to the socket named by
// the environment variable sockEnv.
func Build(t testing.TB, dir, sockEnv string) Fixtures {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Fatalf("gcc is needed to build the I17 fixtures (apt-get install -y gcc): %v", err)
	}
	d, err := os.MkdirTemp(dir, "inject-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	f := Fixtures{Victim: filepath.Join(d, "victim"), Preload: filepath.Join(d, "preload.so")}
	build := func(src, out string, flags ...string) {
		c := filepath.Join(d, filepath.Base(out)+".c")
		if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string{}, flags...), "-o", out, c)
		if b, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, b)
		}
		if err := os.Chmod(out, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build(victimC, f.Victim, "-DSOCK_ENV="+strconv.Quote(sockEnv))
	build(preloadC, f.Preload, "-shared", "-fPIC")
	return f
}

// TraceMe starts name with args traced by the calling process
// (PTRACE_TRACEME, as an attacker's launcher does), lets it run past the
// exec stop, and returns it still traced. The caller's goroutine must be
// locked to its OS thread (runtime.LockOSThread) for as long as the child
// is traced.
func TraceMe(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return err
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(cmd.Process.Pid, &ws, 0, nil); err != nil {
		return err
	}
	if !ws.Stopped() {
		return &os.SyscallError{Syscall: "wait4: child not stopped at exec", Err: syscall.ECHILD}
	}
	return syscall.PtraceCont(cmd.Process.Pid, 0)
}
