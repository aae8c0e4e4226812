package suite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/bench/report"
)

// contestant is one system under test, running (or not) side by side with
// the others.
type contestant struct {
	name    string
	client  string // SPIFFE ID it presents upstream (procmesh: the callers')
	version string
	workers string
	status  string // "ok", "not installed", or why it is not running
	config  string
	sockets peers.Sockets
	proc    *peers.Proc
	start   func() (*peers.Proc, error)
	// scenarios, when set, are the only scenarios the contestant runs in
	// (the procmesh variants: where the protection they change costs).
	scenarios []string
	// env is added to the contestant's environment (Caddy: GOMAXPROCS).
	env []string
}

// in reports whether c takes part in scenario id.
func (c *contestant) in(id string) bool {
	return c.scenarios == nil || slices.Contains(c.scenarios, id)
}

func (c *contestant) ok() bool       { return c.status == "ok" }
func (c *contestant) isDirect() bool { return c.name == report.Direct }

func (c *contestant) stop() {
	if c.proc != nil {
		c.proc.Stop(5 * time.Second)
		c.proc = nil
	}
}

// restart stops and starts the contestant: a fresh process for the memory
// figures.
func (c *contestant) restart() error {
	c.stop()
	p, err := c.start()
	if err != nil {
		c.status = "failed to restart: " + err.Error()
		return err
	}
	c.proc = p
	return nil
}

// pids returns the contestant's processes (nginx: master and workers).
func (e *env) pids(c *contestant) []int {
	if c.proc == nil {
		return nil
	}
	pids, err := e.rd.Tree(c.proc.PID())
	if err != nil {
		return []int{c.proc.PID()}
	}
	return pids
}

// setupContestants writes every configuration and starts every proxy.
func (e *env) setupContestants() {
	e.probeProtocols()
	pm := e.procmeshContestant()
	hap := e.haproxyContestant()
	ngx := e.nginxContestant()
	env := e.envoyContestant()
	cad := e.caddyContestant()
	direct := &contestant{name: report.Direct, client: e.direct.ID, status: "ok", version: "Go " + goVersion() + " crypto/tls",
		workers: "the load generator's own", sockets: peers.Sockets{}}
	e.contenders = []*contestant{pm}
	if e.cfg.Variants {
		e.contenders = append(e.contenders, e.procmeshVariants(pm)...)
	}
	e.contenders = append(e.contenders, hap, ngx, env, cad, direct)
	for _, c := range e.contenders {
		if c.start == nil || c.status != "" {
			continue
		}
		p, err := c.start()
		if err != nil {
			c.status = "failed to start: " + firstLine(err.Error())
			e.errorf("%s: %v", c.name, err)
			continue
		}
		c.proc = p
		c.status = "ok"
	}
	for _, c := range e.contenders {
		if c.ok() {
			if err := e.probe(c); err != nil {
				c.status = "failed its first request: " + firstLine(err.Error())
				e.errorf("%s: %v", c.name, err)
			}
		}
	}
}

// probe sends one HTTP request and one MiB over L4 through c.
func (e *env) probe(c *contestant) error {
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	dial := e.dialer(c, "http")
	conn, err := dial(ctx)
	if err != nil {
		return err
	}
	h := load.NewH1Conn(conn, load.Request(peers.HostH1, "/1k"))
	_, err = h.Do()
	h.Close()
	if err != nil {
		return fmt.Errorf("HTTP: %w", err)
	}
	if !c.isDirect() && c.sockets.L4 == "" {
		return nil
	}
	if _, err := load.RunBulk(ctx, load.Bulk{Dial: e.dialer(c, "l4"), Streams: 1, Duration: 10 * time.Millisecond}); err != nil {
		// One MiB gives one acknowledgement; RunBulk wants two after
		// warm-up, so only a transport error counts here.
		if !strings.Contains(err.Error(), "fewer than two acknowledgements") {
			return fmt.Errorf("L4: %w", err)
		}
	}
	return nil
}

// dialer returns how a client reaches c for a kind of traffic (http, l4).
func (e *env) dialer(c *contestant, kind string) load.Dialer {
	if c.isDirect() {
		switch kind {
		case "l4":
			return load.TLSDialer(e.up.L4, e.directTLS)
		default:
			return load.TLSDialer(e.up.H1, e.directH1)
		}
	}
	switch kind {
	case "l4":
		return load.UnixDialer(c.sockets.L4)
	case "h2":
		return load.UnixDialer(c.sockets.H2)
	case "h3":
		return load.UnixDialer(c.sockets.H3)
	default:
		return load.UnixDialer(c.sockets.HTTP)
	}
}

func (e *env) upstreamInfo() peers.Upstream {
	return peers.Upstream{H1: e.up.H1, H2: e.up.H2, H3: e.up.H3, L4: e.up.L4, ServerName: pki.UpstreamHost, ServerID: pki.UpstreamID}
}

func (e *env) inputs(client pki.Files) peers.Inputs {
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return peers.Inputs{Dir: e.dir, Client: client, Upstream: e.upstreamInfo(), GID: e.cfg.GID,
		MaxConns: e.idleConns() + 500, FDLimit: int(min(lim.Max, 1<<20))}
}

func writeFiles(files map[string]string) error {
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func cmdOutput(argv ...string) string {
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (e *env) caddyContestant() *contestant {
	c := &contestant{name: report.Caddy, workers: "GOMAXPROCS=2"}
	bin, err := exec.LookPath("caddy")
	if err != nil {
		c.status = "not installed"
		c.version = "–"
		return c
	}
	c.version = peers.CaddyVersion(cmdOutput(bin, "version"))
	files, err := e.pki.Client("caddy")
	if err != nil {
		c.status = err.Error()
		return c
	}
	c.client = files.ID
	cfg, sockets := peers.Caddy(e.inputs(files))
	c.sockets = sockets
	c.config = e.path("Caddyfile")
	if err := writeFiles(map[string]string{c.config: cfg}); err != nil {
		c.status = err.Error()
		return c
	}
	c.env = append([]string{"GOMAXPROCS=2"}, peers.CaddyEnv(e.path("caddy"))...)
	args := []string{bin, "run", "--adapter", "caddyfile", "--config", c.config}
	validate := exec.CommandContext(e.ctx, bin, "validate", "--adapter", "caddyfile", "--config", c.config)
	validate.Env = append(os.Environ(), c.env...)
	if out, err := validate.CombinedOutput(); err != nil {
		c.status = "config rejected: " + lastLine(string(out))
		return c
	}
	socks := []string{sockets.HTTP, sockets.H2}
	c.start = func() (*peers.Proc, error) {
		for _, s := range socks {
			os.Remove(s) // a stale socket from the previous start
		}
		p, err := peers.Start("caddy", args, c.env, e.path("caddy.log"))
		if err != nil {
			return nil, err
		}
		if err := p.WaitSockets(20*time.Second, socks...); err != nil {
			p.Stop(2 * time.Second)
			return nil, err
		}
		for _, s := range socks {
			if err := peers.ShareSocket(s, e.cfg.GID); err != nil { // Caddy 2.6's bind has no socket mode
				p.Stop(2 * time.Second)
				return nil, err
			}
		}
		return p, nil
	}
	return c
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
