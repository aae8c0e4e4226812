//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/echo"
)

const (
	upstreamHost = pki.UpstreamHost
	appID        = "spiffe://" + pki.TrustDomain + "/app"
	paymentsID   = "spiffe://" + pki.TrustDomain + "/payments"
	// paymentsUnit is the system unit whose processes are payments: the
	// unit name I15's attacker forges in a cgroup subtree delegated to it.
	paymentsUnit = "procmesh-demo-payments.service"
	// demoUID runs the application and every attacker: the same uid, as
	// on a node where one account runs several programs (THREATS I1).
	demoUID = 1000
	// forgedHeader is what P9's caller claims upstream.
	forgedHeader = "X-Forwarded-Client-Cert: By=spiffe://bench.test/upstream;URI=spiffe://bench.test/admin\nX-Spiffe-Id: spiffe://bench.test/admin"
)

// demo is one run: the run directory, the two binaries, the upstream and
// the two proxies.
type demo struct {
	out      io.Writer
	dir      string
	app      string // registered: unix:uid:1000 + unix:path:<app>
	intruder string // not registered
	echo     *echo.Server
	hap, pm  *peers.Proc
	hapSock  string
	pmSock   string
	pmLog    string
	cgMount  string // the cgroup v2 hierarchy
	// preload is the library the I17 attempt preloads; preloadNote says
	// what it is.
	preload, preloadNote string
}

// via is one of the two proxies an attempt goes through.
type via struct {
	name string // sidecar | procmesh
	sock string
}

// outcome is what one attempt through one proxy came to.
type outcome struct {
	res   result
	rec   *echo.Record // the upstream's record of the request, nil if none reached it
	audit string       // procmesh's audit line for the request (procmesh only)
	short string       // the table cell
	err   error        // the outcome differs from the expected one
}

func run(out io.Writer, procmesh string, keep bool) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("run it as root: it starts processes as uid 1000, makes cgroups and starts HAProxy")
	}
	d := &demo{out: out}
	if d.dir, err = os.MkdirTemp("", "procmesh-demo-"); err != nil {
		return err
	}
	defer func() {
		d.stop()
		if keep {
			fmt.Fprintf(out, "run directory kept: %s\n", d.dir)
		} else {
			os.RemoveAll(d.dir)
		}
	}()
	if err := os.Chmod(d.dir, 0o755); err != nil {
		return err
	}
	if err := d.setup(procmesh); err != nil {
		return err
	}
	return d.attempts()
}

func (d *demo) stop() {
	if d.hap != nil {
		d.hap.Stop(3 * time.Second)
	}
	if d.pm != nil {
		d.pm.Stop(5 * time.Second)
	}
	if d.echo != nil {
		d.echo.Close()
	}
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// setup makes the two binaries, the certificates, the upstream, HAProxy
// and procmesh.
func (d *demo) setup(procmesh string) error {
	if _, err := os.Stat(procmesh); err != nil {
		return fmt.Errorf("no procmesh executable at %s (build it: make build; or pass -procmesh): %w", procmesh, err)
	}
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		return fmt.Errorf("HAProxy is the sidecar this demo compares with: install it (apt-get install -y haproxy, or make demo-attack does): %w", err)
	}
	for _, tool := range []string{"setpriv", "unshare", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s (util-linux) is needed to run the attacks as uid %d: %w", tool, demoUID, err)
		}
	}
	if d.cgMount, err = cgroup2Mount(); err != nil {
		return err
	}
	bin := filepath.Join(d.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	d.app, d.intruder = filepath.Join(bin, "app"), filepath.Join(bin, "intruder")
	for _, c := range []struct{ path, trailer string }{{d.app, "procmesh-demo application"}, {d.intruder, "procmesh-demo intruder"}} {
		if err := copyExe(self, c.path, c.trailer); err != nil {
			return err
		}
	}

	d.preload, d.preloadNote = d.buildPreload(bin)

	// Certificates: one CA (procmesh's builtin CA, which procmesh loads
	// from the same state directory), the upstream's SVID with a DNS name
	// for HAProxy, and the application's SVID that HAProxy holds.
	p, err := pki.New(filepath.Join(d.dir, "state"), filepath.Join(d.dir, "certs"), -1)
	if err != nil {
		return err
	}
	up, err := p.Upstream()
	if err != nil {
		return err
	}
	appFiles, err := p.Client("app")
	if err != nil {
		return err
	}
	svid, err := x509svid.Parse(up.CertPEM, up.KeyPEM)
	if err != nil {
		return err
	}
	bundle, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString(pki.TrustDomain), up.BundlePM)
	if err != nil {
		return err
	}
	d.echo = echo.New(echo.Options{SVID: svid, Bundles: x509bundle.NewSet(bundle)})
	if err := d.echo.Start(); err != nil {
		return err
	}
	addr := d.echo.Addr()

	cfg, sslConf, socks := peers.HAProxy(peers.Inputs{
		Dir: d.dir, Client: appFiles, GID: demoUID, MaxConns: 64, FDLimit: 1024,
		Upstream: peers.Upstream{H1: addr, H2: addr, L4: addr, ServerName: pki.UpstreamHost, ServerID: pki.UpstreamID},
	})
	hapCfg, sslPath := filepath.Join(d.dir, "haproxy.cfg"), filepath.Join(d.dir, "openssl-haproxy.cnf")
	if err := os.WriteFile(hapCfg, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(sslPath, []byte(sslConf), 0o644); err != nil {
		return err
	}
	d.hapSock = socks.HTTP
	if d.hap, err = peers.Start("haproxy", []string{haproxy, "-db", "-f", hapCfg}, []string{"OPENSSL_CONF=" + sslPath}, filepath.Join(d.dir, "haproxy.log")); err != nil {
		return err
	}

	d.pmSock, d.pmLog = filepath.Join(d.dir, "procmesh.sock"), filepath.Join(d.dir, "procmesh.log")
	pmCfg := filepath.Join(d.dir, "procmesh.yaml")
	if err := os.WriteFile(pmCfg, []byte(d.procmeshConfig(p.StateDir, addr)), 0o644); err != nil {
		return err
	}
	if d.pm, err = peers.Start("procmesh", []string{procmesh, "run", "-config", pmCfg}, nil, filepath.Join(d.dir, "procmesh.stderr")); err != nil {
		return err
	}
	if err := d.hap.WaitSockets(10*time.Second, d.hapSock); err != nil {
		return err
	}
	if err := d.pm.WaitSockets(10*time.Second, d.pmSock); err != nil {
		return fmt.Errorf("%w\nprocmesh log: %s", err, tailFile(d.pmLog, 5))
	}
	d.say("upstream   mTLS (go-spiffe, TLS 1.3) at %s, id %s; records the client SPIFFE ID of every request", addr, pki.UpstreamID)
	d.say("sidecar    HAProxy %s holding the application's certificate (%s), socket %s", haproxyVersion(haproxy), appID, d.hapSock)
	d.say("procmesh   %s, socket %s, attest.connect_record: required", procmesh, d.pmSock)
	d.say("entries    %s <- unix:uid:%d unix:path:%s", appID, demoUID, d.app)
	d.say("           %s <- systemd:id:%s (the processes of that system unit)", paymentsID, paymentsUnit)
	d.say("intruder   %s: another program, same uid %d, same cgroup, can reach both sockets", d.intruder, demoUID)
	return nil
}

// procmeshConfig is procmesh's configuration: the two entries, the one
// route, a policy that lets both identities reach it.
func (d *demo) procmeshConfig(stateDir, upstream string) string {
	return fmt.Sprintf(`# Generated by procmesh-demo (make demo-attack).
trust_domain: %[1]s
listen:
  socket: %[2]s
  mode: "0660"
  group: "%[3]d"
identity:
  provider: builtin
  state_dir: %[4]s
attest:
  connect_record: required
workloads:
  - spiffe_id: %[5]s
    selectors: ["unix:uid:%[3]d", "unix:path:%[6]s"]
  - spiffe_id: %[7]s
    selectors: ["systemd:id:%[8]s"]
routes:
  - name: echo
    host: %[9]s
    upstream: %[10]s
    server_id: %[11]s
policy:
  default: deny
  rules:
    - name: demo
      from: [%[5]s, %[7]s]
      to: [echo]
log:
  level: info
  file: %[12]s
  flush_interval: 0s
`, pki.TrustDomain, d.pmSock, demoUID, stateDir, appID, d.app, paymentsID, paymentsUnit,
		upstreamHost, upstream, pki.UpstreamID, d.pmLog)
}

// preloadC is what an attacker preloads: its constructor overwrites the
// process's own LD_PRELOAD= entry, so /proc/PID/environ no longer shows
// it (REDTEAM.md's notes; the same library as internal/injecttest's).
const preloadC = `#include <string.h>
extern char **environ;

__attribute__((constructor)) static void scrub(void) {
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) == 0)
			memset(*e, 'X', strlen(*e));
}
`

// buildPreload compiles preloadC into dir/evil.so when a C compiler is
// there. Without one, the attempt names a library that does not exist:
// the loader ignores it, and LD_PRELOAD stays in the environment.
func (d *demo) buildPreload(dir string) (path, note string) {
	path = filepath.Join(dir, "evil.so")
	cc, err := exec.LookPath("gcc")
	if err != nil {
		return path, "no gcc here: LD_PRELOAD names a library that does not exist, and stays in the environment"
	}
	src := filepath.Join(dir, "evil.c")
	if err := os.WriteFile(src, []byte(preloadC), 0o644); err != nil {
		return path, "could not write evil.c: " + err.Error()
	}
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", path, src).CombinedOutput(); err != nil {
		return path, fmt.Sprintf("gcc failed (%v: %s): LD_PRELOAD names a library that does not exist", err, strings.TrimSpace(string(out)))
	}
	return path, "a library whose constructor erases LD_PRELOAD from the environment: only /proc/PID/maps shows it"
}

// copyExe copies the executable src to dst with trailer appended: the
// same program, other content (another sha256).
func copyExe(src, dst, trailer string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	b = append(b, "\n"+trailer+"\n"...)
	return os.WriteFile(dst, b, 0o755)
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(g) >= 1 && g[0] == "cgroup2" {
			return f[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted (the I15 attempt and procmesh's connect-time record need one)")
}

func haproxyVersion(bin string) string {
	out, _ := exec.Command(bin, "-v").Output()
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return f[2]
	}
	return "(version unknown)"
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// as1000 runs a process as the demo's uid with no supplementary groups,
// in a process group of its own.
func as1000() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: demoUID, Gid: demoUID, Groups: []uint32{}},
		Setpgid:    true,
	}
}

// launch starts cmd, returns the first result line it prints, and then
// kills its process group (the attempts leave sleeping processes behind
// on purpose: the registered binary an attacker exec'd).
func launch(cmd *exec.Cmd) (result, error) {
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	pgid := cmd.Process.Pid
	defer func() {
		syscall.Kill(-pgid, syscall.SIGKILL)
		cmd.Wait()
	}()
	lines := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r result
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Writer != 0 {
				lines <- r
				return
			}
		}
		close(lines)
	}()
	select {
	case r, ok := <-lines:
		if !ok {
			cmd.Wait()
			return result{}, fmt.Errorf("%s printed no result: %s", cmd.Args[0], strings.TrimSpace(stderr.String()))
		}
		return r, nil
	case <-time.After(15 * time.Second):
		return result{}, fmt.Errorf("%s printed no result in 15s: %s", cmd.Args[0], strings.TrimSpace(stderr.String()))
	}
}

// record returns the upstream's record of the request for path.
func (d *demo) record(path string) *echo.Record {
	for _, r := range d.echo.Records() {
		if r.Path == path {
			return &r
		}
	}
	return nil
}

// auditLine waits (briefly) for procmesh's audit line of the request for
// path, or of the connection refused for bytes that writer wrote on it
// (THREATS I12: refused before any request is read).
func (d *demo) auditLine(path string, writer int) string {
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(d.pmLog)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"event":"request"`) && strings.Contains(line, `"target":"`+path+`"`) ||
				strings.Contains(line, `"event":"connection"`) && strings.Contains(line, fmt.Sprintf(`"writer_pid":%d,`, writer)) {
				return line
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
	}
}
