package suite

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
)

func (e *env) oneRequest(c *contestant) error {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	conn, err := e.dialer(c, "http")(ctx)
	if err != nil {
		return err
	}
	h := load.NewH1Conn(conn, load.Request(peers.HostH1, "/1k"))
	defer h.Close()
	_, err = h.Do()
	return err
}

// openIdle opens n keep-alive connections through c, one request each, and
// returns them open.
func (e *env) openIdle(c *contestant, n int) ([]net.Conn, string) {
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	dial := e.dialer(c, "http")
	req := load.Request(peers.HostH1, "/1k")
	var mu sync.Mutex
	conns := make([]net.Conn, 0, n)
	firstErr := ""
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				cn, err := dial(ctx)
				if err == nil {
					cn.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = cn.Write(req); err == nil {
						_, err = load.ReadResponse(bufio.NewReader(cn))
					}
					cn.SetDeadline(time.Time{})
					if err != nil {
						cn.Close()
					}
				}
				mu.Lock()
				if err != nil {
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					conns = append(conns, cn)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, firstErr
}

type cachedResult struct {
	perKiB        float64
	ok, failed    int
	before, after uint64
}

// cachedProcesses makes procmesh cache as many distinct live processes as
// the machine's PID space allows (leaving room for the other users of the
// machine), up to the configured count.
func (e *env) cachedProcesses(c *contestant) (cachedResult, error) {
	var r cachedResult
	n := e.cfg.CachedProcs
	if room := pidRoom() - 4000; room < n {
		n = max(room, 0)
	}
	if n == 0 {
		return r, fmt.Errorf("no room in the PID space (kernel.pid_max)")
	}
	before, err := e.freshBaseline(c)
	if err != nil {
		return r, err
	}
	pids := e.pids(c)
	cmd := exec.CommandContext(e.ctx, e.manyExe, strconv.Itoa(n), c.sockets.HTTP, peers.HostH1)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the helper and every child it forked
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return r, fmt.Errorf("manyprocs: %w", err)
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "ready ok=%d failed=%d", &r.ok, &r.failed); err != nil || r.ok == 0 {
		return r, fmt.Errorf("manyprocs said %q", strings.TrimSpace(line))
	}
	sleep(e.ctx, time.Second)
	after, err := e.rd.Sample(pids)
	if err != nil {
		return r, err
	}
	r.before, r.after = before.RSS, after.RSS
	r.perKiB = (float64(after.RSS) - float64(before.RSS)) / float64(r.ok) / 1024
	return r, nil
}

// pidRoom is how many more processes the PID space holds now.
func pidRoom() int {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0
	}
	max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return max - n
}
