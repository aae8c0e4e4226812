package peers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a proxy (or the upstream) running as a child of the harness, in
// its own process group so that it and its workers are stopped together.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	exited  chan struct{}
	waitErr error
}

// Start starts argv with extra environment, output to logPath.
func Start(name string, argv []string, env []string, logPath string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("peers: %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("peers: start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// PID is the process's id (nginx's master).
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// WaitSockets waits until every path accepts a connection, the process
// exits, or timeout passes.
func (p *Proc) WaitSockets(timeout time.Duration, paths ...string) error {
	deadline := time.Now().Add(timeout)
	for _, path := range paths {
		if path == "" {
			continue
		}
		for {
			c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if p.Exited() {
				return fmt.Errorf("peers: %s exited before listening on %s (%v); log %s: %s", p.Name, path, p.waitErr, p.LogPath, tail(p.LogPath, 6))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("peers: %s is not listening on %s after %s; log %s: %s", p.Name, path, timeout, p.LogPath, tail(p.LogPath, 6))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p == nil || p.Exited() {
		return
	}
	pgid := p.Cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string { return tail(p.LogPath, n) }

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Check runs a command that validates a configuration (procmesh check,
// haproxy -c, nginx -t) and returns its output on failure.
func Check(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s", strings.TrimSpace(string(out)))
		}
		return err
	}
	return nil
}

// ShareSocket gives a socket the run's group and mode 0660, for proxies
// that create it with their own umask (nginx).
func ShareSocket(path string, gid int) error {
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	return nil
}
