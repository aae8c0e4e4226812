package suite

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/bench/report"
)

// probeProtocols asks this procmesh build whether it accepts routes with
// protocol http2 and http3 (another change is adding them).
func (e *env) probeProtocols() {
	check := func(name, protocol, upstream, extra string) string {
		dir := e.path("probe-" + name)
		os.MkdirAll(dir, 0o755)
		file := e.path("probe-" + name + ".yaml")
		if err := os.WriteFile(file, []byte(peers.ProbeConfig(dir, protocol, upstream, pki.UpstreamID, extra)), 0o644); err != nil {
			return err.Error()
		}
		if err := peers.Check(e.ctx, e.cfg.ProcmeshBin, "check", "-config", file); err != nil {
			return "not supported yet (procmesh check: " + firstLine(err.Error()) + ")"
		}
		return ""
	}
	e.h2NA = check("http2", "http2", e.up.H2, "")
	e.h3NA = check("http3", "http3", e.up.H3, "")
	e.hasLimits = check("limits", "http1", e.up.H1, peers.LimitsProbe) == ""
	e.hasCurves = check("curves", "http1", e.up.H1, peers.CurvesProbe) == ""
	e.hasAttest = check("attest", "http1", e.up.H1, peers.AttestProbe) == ""
	e.hasPreconnect = check("preconnect", peers.PreconnectProbe, e.up.H1, "") == ""
}

func (e *env) procmeshContestant() *contestant {
	c := &contestant{name: report.Procmesh, client: "spiffe://bench.test/<caller>", workers: "GOMAXPROCS=2"}
	c.version = strings.TrimPrefix(cmdOutput(e.cfg.ProcmeshBin, "version"), "procmesh ")
	// Enough fresh uids for every cold sample, and for the profiling
	// build's cold load (a separate process: the same uids are new to it).
	n := max(e.cfg.ColdSamples*e.cfg.Trials, profileColdUIDs)
	for i := range n {
		e.coldUIDs = append(e.coldUIDs, coldUIDBase+i)
	}
	clients := map[string]string{"loadgen": e.selfExe}
	if e.h2loadExe != "" {
		clients["h2load"] = e.h2loadExe
	}
	if e.manyExe != "" {
		clients["manyprocs"] = e.manyExe
	}
	e.pmCfg = peers.Procmesh{
		Inputs:       e.inputs(pki.Files{}),
		StateDir:     e.pki.StateDir,
		Clients:      clients,
		ColdUIDs:     append([]int{knownUID}, e.coldUIDs...),
		H2:           e.h2NA == "",
		H3:           e.h3NA == "",
		MaxProcesses: e.cfg.CachedProcs + 2000,
		LogFile:      e.path("procmesh.log"),
	}
	if e.hasLimits {
		e.pmCfg.MaxConnections = e.idleConns() + 2000
	}
	e.pmCfg.AttestUnlimited = e.hasAttest
	if e.hasPreconnect {
		e.pmCfg.Preconnect = e.cfg.Preconnect
	}
	if e.hasCurves {
		e.pmCfg.TLSCurves = []string{"X25519"} // fairness: the key exchange every contestant uses
	}
	c.sockets = e.pmCfg.Sockets()
	c.config = e.path("procmesh.yaml")
	if err := os.WriteFile(c.config, []byte(e.procmeshYAML(e.pmCfg)), 0o644); err != nil {
		c.status = err.Error()
		return c
	}
	if err := peers.Check(e.ctx, e.cfg.ProcmeshBin, "check", "-config", c.config); err != nil {
		c.status = "config rejected: " + firstLine(err.Error())
		return c
	}
	c.start = e.procmeshStart(c, "procmesh")
	return c
}

// procmeshStart returns how to start the procmesh instance c.
func (e *env) procmeshStart(c *contestant, name string) func() (*peers.Proc, error) {
	return func() (*peers.Proc, error) {
		p, err := peers.Start(name, []string{e.cfg.ProcmeshBin, "run", "-config", c.config},
			e.procmeshEnv(), e.path(name+".out"))
		if err != nil {
			return nil, err
		}
		if err := p.WaitSockets(20*time.Second, c.sockets.HTTP, c.sockets.L4); err != nil {
			p.Stop(2 * time.Second)
			return nil, err
		}
		return p, nil
	}
}

// variantScenarios are the scenarios the procmesh variants run in: those
// where the connect-time record and the writer check are paid (per
// connection and per request), the keep-alive loop with the Go client
// only (h2load would measure the same cost again).
var variantScenarios = []string{"keepalive", "rate", "cold"}

// procmeshVariants are procmesh with the same configuration but one
// protection changed, run beside it so that the tables show what the
// protection costs: attest.connect_record off (no BPF record, no sock_diag
// lookup at accept) and attest.foreign_writer attest (each HTTP/1.1 request
// attested as its writer instead of refusing another writer).
func (e *env) procmeshVariants(pm *contestant) []*contestant {
	var out []*contestant
	for _, v := range []struct{ name, tag, setting string }{
		{report.ProcmeshNoRecord, "norecord", "connect_record: off"},
		{report.ProcmeshFWAttest, "fwattest", "foreign_writer: attest"},
	} {
		c := &contestant{name: v.name, workers: pm.workers, version: pm.version + ", attest." + v.setting, scenarios: variantScenarios}
		if pm.status != "" {
			c.status = "procmesh itself: " + pm.status
			out = append(out, c)
			continue
		}
		cfg := e.pmCfg
		cfg.Tag = v.tag
		cfg.Attest = []string{v.setting}
		cfg.LogFile = e.path("procmesh-" + v.tag + ".log")
		e.variantLogs = append(e.variantLogs, cfg.LogFile)
		c.sockets = cfg.Sockets()
		c.config = e.path("procmesh-" + v.tag + ".yaml")
		if err := os.WriteFile(c.config, []byte(e.procmeshYAML(cfg)), 0o644); err != nil {
			c.status = err.Error()
		} else if err := peers.Check(e.ctx, e.cfg.ProcmeshBin, "check", "-config", c.config); err != nil {
			c.status = "config rejected: " + firstLine(err.Error())
		} else {
			c.start = e.procmeshStart(c, "procmesh-"+v.tag)
		}
		out = append(out, c)
	}
	return out
}

// connectRecordStatus is what `procmesh explain` says of the connect-time
// record for the default configuration on this machine: whether the
// norecord variant differs from procmesh at all.
func (e *env) connectRecordStatus(pm *contestant) string {
	out, err := exec.CommandContext(e.ctx, e.cfg.ProcmeshBin, "explain", "-config", pm.config, "-pid", strconv.Itoa(os.Getpid())).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "connect record"); ok {
			return strings.TrimSpace(v)
		}
	}
	return fmt.Sprintf("unknown (procmesh explain: %v: %s)", err, firstLine(string(out)))
}

// procmeshYAML is the generated configuration plus the run's extra YAML.
func (e *env) procmeshYAML(p peers.Procmesh) string {
	p.Extra = e.cfg.ProcmeshYAML
	return p.Config()
}

// procmeshEnv is procmesh's environment: two Ps like every contestant's
// two workers, then the run's -procmesh-env.
func (e *env) procmeshEnv() []string {
	return append([]string{"GOMAXPROCS=2", "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"}, e.cfg.ProcmeshEnv...)
}

func (e *env) haproxyContestant() *contestant {
	c := &contestant{name: report.HAProxy, workers: "nbthread 2"}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		c.status = "not installed"
		return c
	}
	c.version = strings.TrimPrefix(firstLine(cmdOutput(bin, "-v")), "HAProxy version ")
	c.version, _, _ = strings.Cut(c.version, " ")
	files, err := e.pki.Client("haproxy")
	if err != nil {
		c.status = err.Error()
		return c
	}
	c.client = files.ID
	cfg, sslConf, sockets := peers.HAProxy(e.inputs(files))
	c.sockets = sockets
	c.config = e.path("haproxy.cfg")
	sslFile := e.path("openssl-haproxy.cnf")
	if err := writeFiles(map[string]string{c.config: cfg, sslFile: sslConf}); err != nil {
		c.status = err.Error()
		return c
	}
	env := []string{"OPENSSL_CONF=" + sslFile}
	cmd := exec.CommandContext(e.ctx, bin, "-c", "-q", "-f", c.config)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.status = "config rejected: " + firstLine(string(out))
		return c
	}
	c.start = func() (*peers.Proc, error) {
		p, err := peers.Start("haproxy", []string{bin, "-db", "-f", c.config}, env, e.path("haproxy.log"))
		if err != nil {
			return nil, err
		}
		if err := p.WaitSockets(20*time.Second, sockets.HTTP, sockets.H2, sockets.L4); err != nil {
			p.Stop(2 * time.Second)
			return nil, err
		}
		return p, nil
	}
	return c
}

func (e *env) nginxContestant() *contestant {
	c := &contestant{name: report.Nginx, workers: "worker_processes 2"}
	bin, err := exec.LookPath("nginx")
	if err != nil {
		c.status = "not installed"
		return c
	}
	if _, err := os.Stat(peers.NginxStreamModule); err != nil {
		c.status = "not installed (libnginx-mod-stream)"
		return c
	}
	c.version = strings.TrimPrefix(firstLine(cmdOutput(bin, "-v")), "nginx version: nginx/")
	files, err := e.pki.Client("nginx")
	if err != nil {
		c.status = err.Error()
		return c
	}
	c.client = files.ID
	cfg, sockets := peers.Nginx(e.inputs(files))
	c.sockets = sockets
	c.config = e.path("nginx.conf")
	for _, d := range []string{"nginx-client-body", "nginx-proxy-temp"} {
		os.MkdirAll(e.path(d), 0o755)
	}
	if err := writeFiles(map[string]string{c.config: cfg}); err != nil {
		c.status = err.Error()
		return c
	}
	args := []string{"-c", c.config, "-p", e.dir + "/", "-e", e.path("nginx-error.log")}
	if err := peers.Check(e.ctx, append(append([]string{bin}, args...), "-t", "-q")...); err != nil {
		c.status = "config rejected: " + firstLine(err.Error())
		return c
	}
	c.start = func() (*peers.Proc, error) {
		for _, s := range []string{sockets.HTTP, sockets.L4} {
			os.Remove(s) // nginx refuses to bind over a stale socket
		}
		p, err := peers.Start("nginx", append([]string{bin}, args...), nil, e.path("nginx.out"))
		if err != nil {
			return nil, err
		}
		if err := p.WaitSockets(20*time.Second, sockets.HTTP, sockets.L4); err != nil {
			p.Stop(2 * time.Second)
			return nil, err
		}
		for _, s := range []string{sockets.HTTP, sockets.L4} {
			if err := peers.ShareSocket(s, e.cfg.GID); err != nil {
				p.Stop(2 * time.Second)
				return nil, err
			}
		}
		return p, nil
	}
	return c
}

func (e *env) envoyContestant() *contestant {
	c := &contestant{name: report.Envoy, workers: "--concurrency 2"}
	bin, err := exec.LookPath("envoy")
	if err != nil {
		c.status = "not installed"
		c.version = "–"
		// Write the configuration anyway, so it can be inspected or run
		// elsewhere.
		files, err := e.pki.Client("envoy")
		if err == nil {
			cfg, _ := peers.Envoy(e.inputs(files))
			c.config = e.path("envoy.yaml")
			writeFiles(map[string]string{c.config: cfg})
		}
		return c
	}
	c.version = peers.EnvoyVersion(cmdOutput(bin, "--version"))
	files, err := e.pki.Client("envoy")
	if err != nil {
		c.status = err.Error()
		return c
	}
	c.client = files.ID
	cfg, sockets := peers.Envoy(e.inputs(files))
	c.sockets = sockets
	c.config = e.path("envoy.yaml")
	if err := writeFiles(map[string]string{c.config: cfg}); err != nil {
		c.status = err.Error()
		return c
	}
	args := []string{bin, "-c", c.config, "--concurrency", "2", "--log-level", "warn", "--disable-hot-restart"}
	if err := peers.Check(e.ctx, append(append([]string{}, args...), "--mode", "validate")...); err != nil {
		c.status = "config rejected: " + firstLine(err.Error())
		return c
	}
	c.start = func() (*peers.Proc, error) {
		p, err := peers.Start("envoy", args, nil, e.path("envoy.log"))
		if err != nil {
			return nil, err
		}
		if err := p.WaitSockets(30*time.Second, sockets.HTTP, sockets.H2, sockets.L4); err != nil {
			p.Stop(2 * time.Second)
			return nil, err
		}
		for _, s := range []string{sockets.HTTP, sockets.H2, sockets.L4} {
			if err := peers.ShareSocket(s, e.cfg.GID); err != nil { // Envoy's pipe has a mode but no group
				p.Stop(2 * time.Second)
				return nil, err
			}
		}
		return p, nil
	}
	return c
}
