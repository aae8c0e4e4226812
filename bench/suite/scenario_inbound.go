package suite

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/bench/report"
)

// inboundConnsNew is how many connections the handshake-per-request loop
// keeps busy: each request is a new TCP connection and a full TLS 1.3
// handshake, so fewer clients than the keep-alive loop's 64 already
// saturate two cores.
const inboundConnsNew = 16

// inboundStartCost is what starting the app and the inbound terminators
// takes (the estimate's share of setup for this scenario).
const inboundStartCost = 4 * time.Second

// inboundContestants is how many rows the inbound scenario measures:
// procmesh, HAProxy, nginx, Caddy, direct mTLS.
const inboundContestants = 5

// newConnRequest is the handshake-per-request loop's request: the client
// asks to close after the response, so every request dials again.
func newConnRequest(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: procmesh-bench\r\nConnection: close\r\n\r\n")
}

// inboundSide is one contestant of the inbound scenario: where the remote
// client connects and what it verifies there.
type inboundSide struct {
	*contestant
	addr string
	tls  *tls.Config
}

func (s *inboundSide) dial() load.Dialer { return load.TLSDialer(s.addr, s.tls) }

// inboundPlan starts the app and the inbound terminators (each a process
// of its own, apart from the egress contestants) and measures a remote
// mTLS client through each: keep-alive and a new connection per request.
func (e *env) inboundPlan() *plan {
	sc := &report.Scenario{ID: "inbound", Title: "Inbound: remote mTLS client → TCP mTLS terminator → Unix-socket app",
		How: fmt.Sprintf("The suite's Go HTTP/1.1 client, as a remote caller with its own X509-SVID (`spiffe://bench.test/inbound-client`), connects over loopback TCP with mTLS (TLS 1.3, X25519, no session resumption) to the terminator, which verifies it against the bundle and forwards plain HTTP/1.1 over pooled connections to one app (`procmesh-bench app`: the upstream's keep-alive responder, 1 KiB bodies, on a Unix socket). "+
			"procmesh: an `inbound:` listener (`protocol: http1`, `pass_identity: xfcc`, a policy allowing the client) that presents `%s` only while the app's process is attested as it; HAProxy: `bind … ssl crt … ca-file … verify required` → `server app unix@…`; nginx: `ssl_verify_client on` → an upstream on the socket with `keepalive 64`; Caddy: `tls { client_auth { mode require_and_verify } }` → `reverse_proxy unix/…`; direct mTLS: the client to the upstream's own TLS listener (the same responder with TLS in-process), the ceiling. "+
			"Keep-alive: %d connections, `GET /1k` back to back, %s warm-up + %s. New connection per request: %d clients, each request with `Connection: close` on a new TCP connection and full handshake, same times. "+
			"Terminator CPU is utime+stime of its processes (not the app's, which is the same for all) over the run, divided by the requests it served. "+
			"End to end: the same Go client on a local Unix socket → an egress proxy → mTLS over loopback TCP → the same program's inbound terminator above → the app; procmesh → procmesh (its egress presents the calling program's SVID, `spiffe://bench.test/loadgen`, which the inbound policy allows and passes to the app in X-Forwarded-Client-Cert) and HAProxy → HAProxy (a static client certificate, `server … ssl verify required … sni str(inbound.bench.test)`); keep-alive as above, CPU of both proxies' processes per request. "+
			"Opt-in: `-only inbound` or `-inbound`.", peers.AppID, e.cfg.KAConns, e.cfg.KAWarmup, e.cfg.KADuration, inboundConnsNew)}
	ka := newMetric("ib_ka", "keep-alive", "req/s", "higher", report.HAProxy, report.Direct)
	kaCPU := newMetric("ib_ka_cpu", "terminator CPU per request, keep-alive", "µs/req", "lower", report.HAProxy)
	nc := newMetric("ib_new", "new connection per request", "req/s", "higher", report.HAProxy, report.Direct)
	ncCPU := newMetric("ib_new_cpu", "terminator CPU per request, new connection per request", "µs/req", "lower", report.HAProxy)
	e2e := newMetric("e2e_ka", "end to end, keep-alive: local client → egress → inbound → app", "req/s", "higher", report.HAProxy)
	e2eCPU := newMetric("e2e_cpu", "CPU per request of both proxies, end to end", "µs/req", "lower", report.HAProxy)
	sc.Metrics = []*report.Metric{ka, kaCPU, nc, ncCPU, e2e, e2eCPU}
	for _, name := range []string{report.Nginx, report.Caddy, report.Direct} {
		for _, m := range []*report.Metric{e2e, e2eCPU} {
			m.SetNA(name, "the end-to-end path is measured for procmesh → procmesh and HAProxy → HAProxy")
		}
	}
	sc.Notes = append(sc.Notes,
		"procmesh does more per request than the others here: it decides its policy per request, replaces X-Forwarded-Client-Cert with the caller's verified ID, writes an audit line, and attests each new connection it opens to the app; HAProxy, nginx and Caddy only verify the chain and pass nothing on.")
	kaCPU.SetNA(report.Direct, "no terminator process")
	ncCPU.SetNA(report.Direct, "no terminator process")

	sides, negotiated := e.startInbound()
	if len(negotiated) > 0 {
		sc.Notes = append(sc.Notes, "Fairness: what the client's first handshake with each negotiated (the client offers TLS 1.3 and X25519 only; HAProxy and nginx are pinned to TLS_AES_128_GCM_SHA256, Go servers pick it on AES hardware): "+strings.Join(negotiated, "; ")+".")
	}
	for _, s := range sides {
		if !s.ok() {
			for _, m := range sc.Metrics {
				m.SetNA(s.name, s.status)
			}
		}
	}
	paths := e.startE2E(sides)
	for _, p := range paths {
		if !p.ok() {
			e2e.SetNA(p.name, p.status)
			e2eCPU.SetNA(p.name, p.status)
		}
	}
	var steps []step
	for t := range e.cfg.Trials {
		var okPaths []*e2ePath
		for _, p := range paths {
			if p.ok() {
				okPaths = append(okPaths, p)
			}
		}
		for i := range okPaths {
			p := okPaths[(i+t)%len(okPaths)]
			steps = append(steps, step{
				label: fmt.Sprintf("end to end keep-alive, %s → %s, trial %d/%d", p.name, p.name, t+1, e.cfg.Trials),
				run: func() string {
					m1, m2 := e.startCPU(p.contestant), e.startCPU(p.inbound.contestant)
					r := load.RunClosed(e.ctx, load.Closed{Dial: load.UnixDialer(p.socket), Request: load.Request(peers.HostE2E, "/1k"),
						Conns: e.cfg.KAConns, Warmup: e.cfg.KAWarmup, Duration: e.cfg.KADuration})
					perReq := m1.perRequest(r.All) + m2.perRequest(r.All)
					if r.Requests == 0 {
						e2e.Add(p.name, math.NaN())
						e2eCPU.Add(p.name, math.NaN())
						e.errorf("end to end, %s, trial %d: no request succeeded: %s", p.name, t+1, whyNone(r))
						return "error: " + whyNone(r)
					}
					e2e.Add(p.name, r.RPS())
					e2eCPU.Add(p.name, perReq)
					return closedSummary(r, perReq)
				},
			})
		}
		var running []*inboundSide
		for _, s := range sides {
			if s.ok() {
				running = append(running, s)
			}
		}
		for i := range running {
			s := running[(i+t)%len(running)]
			for _, kind := range []struct {
				label     string
				req       []byte
				conns     int
				once      bool
				rps, cpus *report.Metric
			}{
				{"keep-alive", load.Request(pki.InboundHost, "/1k"), e.cfg.KAConns, false, ka, kaCPU},
				{"new connection per request", newConnRequest(pki.InboundHost, "/1k"), inboundConnsNew, true, nc, ncCPU},
			} {
				steps = append(steps, step{
					label: fmt.Sprintf("inbound %s, %s, trial %d/%d", kind.label, s.name, t+1, e.cfg.Trials),
					run: func() string {
						meter := e.startCPU(s.contestant)
						r := load.RunClosed(e.ctx, load.Closed{Dial: s.dial(), Request: kind.req,
							Conns: kind.conns, Warmup: e.cfg.KAWarmup, Duration: e.cfg.KADuration, NewConnPerRequest: kind.once})
						perReq := meter.perRequest(r.All)
						if r.Requests == 0 {
							kind.rps.Add(s.name, math.NaN())
							if !s.isDirect() {
								kind.cpus.Add(s.name, math.NaN())
							}
							e.errorf("inbound %s, %s, trial %d: no request succeeded: %s", kind.label, s.name, t+1, whyNone(r))
							return "error: " + whyNone(r)
						}
						kind.rps.Add(s.name, r.RPS())
						if !s.isDirect() {
							kind.cpus.Add(s.name, perReq)
						}
						return closedSummary(r, perReq)
					},
				})
			}
		}
	}
	return &plan{sc: sc, steps: steps, finish: e.stopInbound}
}

// startInbound starts the app and every terminator, and probes each with
// one request. A terminator that is not installed, whose configuration is
// refused or that fails its first request gets that as its status.
func (e *env) startInbound() (sides []*inboundSide, negotiated []string) {
	client, err := e.pki.Client("inbound-client")
	direct := &inboundSide{contestant: &contestant{name: report.Direct, status: "ok"}, addr: e.up.H1, tls: e.directH1}
	if err != nil {
		e.errorf("inbound: %v", err)
		return []*inboundSide{direct}, nil
	}
	appSock := e.path("app.sock")
	appExe := e.path("bin/procmesh-bench-app") // a path of its own: procmesh registers the app by it
	appErr := copyFile(e.selfExe, appExe, 0o755)
	if appErr == nil {
		e.app, appErr = peers.Start("app", []string{appExe, "app", "-socket", appSock}, []string{"GOMAXPROCS=2"}, e.path("app.log"))
	}
	if appErr == nil {
		if appErr = e.app.WaitSockets(15*time.Second, appSock); appErr != nil {
			e.app.Stop(2 * time.Second)
			e.app = nil
		}
	}
	var lim = e.inputs(pki.Files{})
	base := peers.Inbound{Dir: e.dir, App: appSock, ClientID: client.ID, Callers: []string{e2eCallerID},
		MaxConns: lim.MaxConns, FDLimit: lim.FDLimit}
	sides = []*inboundSide{
		e.procmeshInbound(base, appExe, client),
		e.haproxyInbound(base, client),
		e.nginxInbound(base, client),
		e.caddyInbound(base, client),
		direct,
	}
	e.inbound = sides
	for _, s := range sides {
		if appErr != nil && !s.isDirect() {
			s.status = "the app did not start: " + firstLine(appErr.Error())
			continue
		}
		if s.start == nil || s.status != "" {
			continue
		}
		p, err := s.start()
		if err != nil {
			s.status = "failed to start: " + firstLine(err.Error())
			e.errorf("inbound %s: %v", s.name, err)
			continue
		}
		s.proc, s.status = p, "ok"
	}

	for _, s := range sides {
		if s.ok() {
			hs, err := probeInbound(e.ctx, s)
			if err != nil {
				s.status = "failed its first request: " + firstLine(err.Error())
				e.errorf("inbound %s: %v", s.name, err)
			} else {
				negotiated = append(negotiated, s.name+": "+hs)
			}
		}
		fmt.Fprintf(e.cfg.Progress, "  inbound %-8s %-14s %s\n", s.name, s.version, s.status)
	}
	return sides, negotiated
}

// stopInbound stops the terminators and the app once the scenario is over.
func (e *env) stopInbound() {
	for _, p := range e.e2e {
		p.stop()
	}
	for _, s := range e.inbound {
		s.stop()
	}
	if e.app != nil {
		e.app.Stop(5 * time.Second)
		e.app = nil
	}
}

// probeInbound sends one request through s and returns what its
// handshake negotiated, for the fairness note.
func probeInbound(ctx context.Context, s *inboundSide) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := s.dial()(ctx)
	if err != nil {
		return "", err
	}
	h := load.NewH1Conn(c, load.Request(pki.InboundHost, "/1k"))
	defer h.Close()
	if _, err = h.Do(); err != nil {
		return "", err
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return "", nil
	}
	st := tc.ConnectionState()
	return fmt.Sprintf("%s, %s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID), nil
}

// freeAddr returns a loopback TCP address nothing listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitTCP waits until addr accepts a connection, p exits or timeout passes.
func waitTCP(p *peers.Proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before listening on %s: %s", p.Name, addr, p.Tail(6))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not listening on %s after %s: %s", p.Name, addr, timeout, p.Tail(6))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inboundSideFor prepares the common part of a terminator: its address,
// its server certificate (named after it) and the client's TLS settings,
// which verify that certificate's ID.
func (e *env) inboundSideFor(name string, base *peers.Inbound, client pki.Files, serverID string) (*inboundSide, error) {
	s := &inboundSide{contestant: &contestant{name: name}}
	addr, err := freeAddr()
	if err != nil {
		return s, err
	}
	base.Listen, s.addr = addr, addr
	if serverID == "" {
		srv, err := e.pki.Server(name+"-inbound", "spiffe://"+pki.TrustDomain+"/"+name+"-inbound", pki.InboundHost)
		if err != nil {
			return s, err
		}
		base.Server, serverID = srv, srv.ID
	}
	if s.tls, err = load.DirectTLS(client.Cert, client.Key, client.Bundle, serverID, "http/1.1"); err != nil {
		return s, err
	}
	s.tls.ServerName = pki.InboundHost // SNI, the same for every terminator; the ID is what is verified
	return s, nil
}

func (e *env) procmeshInbound(base peers.Inbound, appExe string, client pki.Files) *inboundSide {
	s, err := e.inboundSideFor(report.Procmesh, &base, client, peers.AppID)
	s.workers = "GOMAXPROCS=2"
	s.version = strings.TrimPrefix(cmdOutput(e.cfg.ProcmeshBin, "version"), "procmesh ")
	if err != nil {
		s.status = err.Error()
		return s
	}
	s.config = e.path("procmesh-inbound.yaml")
	logFile := e.path("procmesh-inbound.log")
	e.variantLogs = append(e.variantLogs, logFile) // emptied between steps like procmesh's own
	if err := writeFiles(map[string]string{s.config: peers.ProcmeshInbound(base, e.pki.StateDir, appExe, logFile)}); err != nil {
		s.status = err.Error()
		return s
	}
	if err := peers.Check(e.ctx, e.cfg.ProcmeshBin, "check", "-config", s.config); err != nil {
		s.status = "config rejected: " + firstLine(err.Error())
		return s
	}
	sock := e.path("pm-inbound.sock")
	s.start = func() (*peers.Proc, error) {
		p, err := peers.Start("procmesh-inbound", []string{e.cfg.ProcmeshBin, "run", "-config", s.config}, e.procmeshEnv(), e.path("procmesh-inbound.out"))
		if err != nil {
			return nil, err
		}
		err = p.WaitSockets(20*time.Second, sock)
		if err == nil {
			err = waitTCP(p, s.addr, 20*time.Second)
		}
		if err != nil {
			p.Stop(2 * time.Second)
			return nil, err
		}
		return p, nil
	}
	return s
}

func (e *env) haproxyInbound(base peers.Inbound, client pki.Files) *inboundSide {
	bin, lookErr := exec.LookPath("haproxy")
	s, err := e.inboundSideFor(report.HAProxy, &base, client, "")
	s.workers = "nbthread 2"
	if lookErr != nil {
		s.status = "not installed"
		return s
	}
	s.version, _, _ = strings.Cut(strings.TrimPrefix(firstLine(cmdOutput(bin, "-v")), "HAProxy version "), " ")
	if err != nil {
		s.status = err.Error()
		return s
	}
	s.config = e.path("haproxy-inbound.cfg")
	sslFile := e.path("openssl-haproxy.cnf")
	if err := writeFiles(map[string]string{s.config: peers.HAProxyInbound(base), sslFile: peers.OpenSSLConf}); err != nil {
		s.status = err.Error()
		return s
	}
	env := []string{"OPENSSL_CONF=" + sslFile}
	cmd := exec.CommandContext(e.ctx, bin, "-c", "-q", "-f", s.config)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.status = "config rejected: " + firstLine(string(out))
		return s
	}
	s.start = e.startTCP("haproxy-inbound", []string{bin, "-db", "-f", s.config}, env, "haproxy-inbound.log", s.addr)
	return s
}

// startTCP returns the start of a terminator: run args (with env, output
// to the run directory's log), then wait until it accepts on addr.
func (e *env) startTCP(name string, args, env []string, log, addr string) func() (*peers.Proc, error) {
	return func() (*peers.Proc, error) {
		p, err := peers.Start(name, args, env, e.path(log))
		if err != nil {
			return nil, err
		}
		if err := waitTCP(p, addr, 20*time.Second); err != nil {
			p.Stop(2 * time.Second)
			return nil, err
		}
		return p, nil
	}
}

func (e *env) nginxInbound(base peers.Inbound, client pki.Files) *inboundSide {
	bin, lookErr := exec.LookPath("nginx")
	s, err := e.inboundSideFor(report.Nginx, &base, client, "")
	s.workers = "worker_processes 2"
	if lookErr != nil {
		s.status = "not installed"
		return s
	}
	s.version = strings.TrimPrefix(firstLine(cmdOutput(bin, "-v")), "nginx version: nginx/")
	if err != nil {
		s.status = err.Error()
		return s
	}
	s.config = e.path("nginx-inbound.conf")
	for _, d := range []string{"nginx-inbound-client-body", "nginx-inbound-proxy-temp"} {
		os.MkdirAll(e.path(d), 0o755)
	}
	if err := writeFiles(map[string]string{s.config: peers.NginxInbound(base)}); err != nil {
		s.status = err.Error()
		return s
	}
	args := []string{bin, "-c", s.config, "-p", e.dir + "/", "-e", e.path("nginx-inbound-error.log")}
	if err := peers.Check(e.ctx, append(append([]string{}, args...), "-t", "-q")...); err != nil {
		s.status = "config rejected: " + firstLine(err.Error())
		return s
	}
	s.start = e.startTCP("nginx-inbound", args, nil, "nginx-inbound.out", s.addr)
	return s
}

func (e *env) caddyInbound(base peers.Inbound, client pki.Files) *inboundSide {
	bin, lookErr := exec.LookPath("caddy")
	s, err := e.inboundSideFor(report.Caddy, &base, client, "")
	s.workers = "GOMAXPROCS=2"
	if lookErr != nil {
		s.status = "not installed"
		return s
	}
	s.version = peers.CaddyVersion(cmdOutput(bin, "version"))
	if err != nil {
		s.status = err.Error()
		return s
	}
	s.config = e.path("Caddyfile-inbound")
	if err := writeFiles(map[string]string{s.config: peers.CaddyInbound(base)}); err != nil {
		s.status = err.Error()
		return s
	}
	env := append([]string{"GOMAXPROCS=2"}, peers.CaddyEnv(e.path("caddy-inbound"))...)
	validate := exec.CommandContext(e.ctx, bin, "validate", "--adapter", "caddyfile", "--config", s.config)
	validate.Env = append(os.Environ(), env...)
	if out, err := validate.CombinedOutput(); err != nil {
		s.status = "config rejected: " + lastLine(string(out))
		return s
	}
	s.start = e.startTCP("caddy-inbound", []string{bin, "run", "--adapter", "caddyfile", "--config", s.config}, env, "caddy-inbound.log", s.addr)
	return s
}

// e2eCallerID is the end-to-end caller's ID: the suite's own program as
// procmesh's egress attests it and presents it to procmesh's inbound.
const e2eCallerID = "spiffe://bench.test/loadgen"

// e2eContestants is how many end-to-end paths the estimate counts.
const e2eContestants = 2

// e2ePath is an end-to-end path: a local client on socket → the egress
// proxy (the contestant) → mTLS → inbound, the same program's inbound
// terminator → the app.
type e2ePath struct {
	*contestant
	socket  string
	inbound *inboundSide
}

// startE2E starts the egress halves of the end-to-end paths: procmesh in
// front of procmesh's inbound listener, HAProxy in front of the inbound
// HAProxy.
func (e *env) startE2E(sides []*inboundSide) []*e2ePath {
	byName := map[string]*inboundSide{}
	for _, s := range sides {
		byName[s.name] = s
	}
	var paths []*e2ePath
	for _, name := range []string{report.Procmesh, report.HAProxy} {
		p := &e2ePath{contestant: &contestant{name: name}, inbound: byName[name]}
		paths = append(paths, p)
		if p.inbound == nil || !p.inbound.ok() {
			p.status = "its inbound half is not running"
			if p.inbound != nil {
				p.status += ": " + p.inbound.status
			}
			continue
		}
		p.socket = e.path(name + "-e2e.sock")
		in := peers.E2E{Dir: e.dir, Socket: p.socket, Inbound: p.inbound.addr, GID: e.cfg.GID}
		var start func() (*peers.Proc, error)
		var err error
		if name == report.Procmesh {
			start, err = e.procmeshEgress(p, in)
		} else {
			start, err = e.haproxyEgress(p, in)
		}
		if err != nil {
			p.status = err.Error()
			continue
		}
		proc, err := start()
		if err != nil {
			p.status = "failed to start: " + firstLine(err.Error())
			e.errorf("end to end %s: %v", name, err)
			continue
		}
		p.proc, p.status = proc, "ok"
		if err := probeE2E(e.ctx, p.socket); err != nil {
			p.status = "failed its first request: " + firstLine(err.Error())
			e.errorf("end to end %s: %v", name, err)
		}
	}
	e.e2e = paths
	for _, p := range paths {
		fmt.Fprintf(e.cfg.Progress, "  end to end %s → %s: %s\n", p.name, p.name, p.status)
	}
	return paths
}

func probeE2E(ctx context.Context, socket string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := load.UnixDialer(socket)(ctx)
	if err != nil {
		return err
	}
	h := load.NewH1Conn(c, load.Request(peers.HostE2E, "/1k"))
	defer h.Close()
	_, err = h.Do()
	return err
}

func (e *env) procmeshEgress(p *e2ePath, in peers.E2E) (func() (*peers.Proc, error), error) {
	in.ServerID = peers.AppID
	p.config = e.path("procmesh-egress.yaml")
	logFile := e.path("procmesh-egress.log")
	e.variantLogs = append(e.variantLogs, logFile)
	var curves []string
	if e.hasCurves {
		curves = []string{"X25519"}
	}
	if err := writeFiles(map[string]string{p.config: peers.ProcmeshEgress(in, e.pki.StateDir, e.selfExe, logFile, curves)}); err != nil {
		return nil, err
	}
	if err := peers.Check(e.ctx, e.cfg.ProcmeshBin, "check", "-config", p.config); err != nil {
		return nil, fmt.Errorf("config rejected: %s", firstLine(err.Error()))
	}
	return func() (*peers.Proc, error) {
		proc, err := peers.Start("procmesh-egress", []string{e.cfg.ProcmeshBin, "run", "-config", p.config}, e.procmeshEnv(), e.path("procmesh-egress.out"))
		if err != nil {
			return nil, err
		}
		if err := proc.WaitSockets(20*time.Second, in.Socket); err != nil {
			proc.Stop(2 * time.Second)
			return nil, err
		}
		return proc, nil
	}, nil
}

func (e *env) haproxyEgress(p *e2ePath, in peers.E2E) (func() (*peers.Proc, error), error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, err
	}
	if in.Client, err = e.pki.Client("haproxy-egress"); err != nil {
		return nil, err
	}
	p.config = e.path("haproxy-egress.cfg")
	sslFile := e.path("openssl-haproxy.cnf")
	if err := writeFiles(map[string]string{p.config: peers.HAProxyEgress(in), sslFile: peers.OpenSSLConf}); err != nil {
		return nil, err
	}
	env := []string{"OPENSSL_CONF=" + sslFile}
	cmd := exec.CommandContext(e.ctx, bin, "-c", "-q", "-f", p.config)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("config rejected: %s", firstLine(string(out)))
	}
	return func() (*peers.Proc, error) {
		proc, err := peers.Start("haproxy-egress", []string{bin, "-db", "-f", p.config}, env, e.path("haproxy-egress.log"))
		if err != nil {
			return nil, err
		}
		if err := proc.WaitSockets(20*time.Second, in.Socket); err != nil {
			proc.Stop(2 * time.Second)
			return nil, err
		}
		return proc, nil
	}, nil
}
