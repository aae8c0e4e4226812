package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procmesh/procmesh/internal/logtest"
)

// TestLogFileBufferedReopenedAndFlushedAtExit runs procmesh as a process
// with log.file and a minute-long log.flush_interval, so nothing reaches
// the file on a timer: startup lines and a request's audit line wait in the
// buffer; SIGHUP after a logrotate-style rename writes them to the rotated
// file and opens a new file (0600) for what follows; SIGTERM writes the
// rest before exit.
func TestLogFileBufferedReopenedAndFlushedAtExit(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "procmesh")
	// -race: the race build make test compiled serves, not a second
	// compile of every dependency.
	build := exec.Command("go", "build", "-race", "-o", bin, "./cmd/procmesh")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "procmesh.log")
	cfgPath, cfgDir := writeConfig(t, "reload: {watch: false}\nlog: {file: "+logPath+", flush_interval: 1m}\n")

	cmd := exec.Command(bin, "run", "-config", cfgPath)
	var stderr logtest.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	sock := filepath.Join(cfgDir, "egress.sock")
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	deadline := time.Now().Add(30 * time.Second)
	var resp *http.Response
	for {
		if resp, err = client.Get("http://echo.test/buffered"); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("procmesh exited early (%v):\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer on %s within 30s: %v\n%s", sock, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp.Body.Close() // 502: the route's upstream is down; the request is audited all the same
	client.CloseIdleConnections()

	const audit = `"target":"/buffered"`
	if b, _ := os.ReadFile(logPath); strings.Contains(string(b), audit) {
		t.Fatalf("the audit line is in the file before any flush; log.flush_interval: 1m did not buffer it:\n%s", b)
	}

	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload after the reopen flushes its own line to the new file.
	waitForFile(t, logPath, `"config reloaded"`, &stderr)
	if b, _ := os.ReadFile(rotated); !strings.Contains(string(b), `"procmesh ready"`) {
		t.Fatalf("SIGHUP did not write the buffered lines to the rotated file:\n%s", b)
	}
	if st, err := os.Stat(logPath); err != nil {
		t.Fatal(err)
	} else if st.Mode().Perm() != 0o600 {
		t.Fatalf("reopened log.file has mode %v, want 0600", st.Mode().Perm())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("procmesh after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("procmesh did not stop within 30s of SIGTERM:\n%s", stderr.String())
	}
	b, _ := os.ReadFile(logPath)
	for _, want := range []string{`"signal received; draining"`, `"procmesh stopped"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the log file lacks %s after a clean shutdown:\n%s", want, b)
		}
	}
	// The request's audit line is written when its handler returns, which
	// may be just after the client has the response: it is in one of the
	// two files, once.
	old, _ := os.ReadFile(rotated)
	if n := strings.Count(string(old), audit) + strings.Count(string(b), audit); n != 1 {
		t.Errorf("the audit line is in the files %d times, want once:\nrotated:\n%s\nnew:\n%s", n, old, b)
	}
}

// waitForFile polls path until it contains want.
func waitForFile(t *testing.T, path, want string, out *logtest.Buffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("%s does not contain %s within 30s:\n%s\nprocmesh output:\n%s", path, want, b, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
