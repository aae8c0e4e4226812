package suite

import (
	"context"
	"crypto/tls"
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

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/bench/procstat"
	"github.com/procmesh/procmesh/bench/report"
	"github.com/procmesh/procmesh/bench/upstream"
)

// coldUIDBase is the first uid handed to cold-identity processes; uids
// from here on are not expected to exist in /etc/passwd (the kernel does
// not care).
const coldUIDBase = 200000

// knownUID is the uid of the "known identity" cold processes: registered,
// minted and pooled once before they are measured.
const knownUID = coldUIDBase - 1

// peerUID runs the cold processes that talk to HAProxy, nginx, Envoy, Caddy and
// direct TLS (only procmesh cares which uid calls).
const peerUID = coldUIDBase - 2

// env is everything one run set up.
type env struct {
	cfg  Config
	ctx  context.Context
	dir  string
	rd   procstat.Reader
	pki  *pki.PKI
	run  *report.Run
	errs []string

	upstream      *peers.Proc
	up            upstream.Addrs
	direct        pki.Files
	directTLS     *tls.Config // no ALPN: L4
	directH1      *tls.Config
	selfExe       string
	coldExe       string
	manyExe       string
	h2loadExe     string
	h2NA, h3NA    string // why procmesh cannot (yet) speak HTTP/2 or HTTP/3 upstream
	hasLimits     bool   // procmesh has limits.max_connections*
	hasCurves     bool   // procmesh has upstream.tls_curves
	hasAttest     bool   // procmesh has attest.rate_per_uid
	hasPreconnect bool   // procmesh has routes[].preconnect

	pmCfg        peers.Procmesh
	coldUIDs     []int
	coldNext     map[string]int // per procmesh instance: the next of coldUIDs it has not seen
	variantLogs  []string       // procmesh log files besides the main one (variants, inbound, end-to-end egress), emptied between steps
	recordStatus string         // procmesh explain's connect record line (with the variants)
	contenders   []*contestant  // procmesh, its variants, haproxy, nginx, envoy, caddy, direct

	app     *peers.Proc    // the inbound scenario's Unix-socket app
	inbound []*inboundSide // the inbound scenario's terminators and direct mTLS
	e2e     []*e2ePath     // its end-to-end paths' egress halves
}

func (e *env) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.errs = append(e.errs, msg)
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// setup prepares the run directory, the CA and certificates, the upstream
// and the helper binaries.
func (e *env) setup() error {
	if e.cfg.RunDir == "" {
		d, err := os.MkdirTemp("/tmp", "procmesh-bench.")
		if err != nil {
			return err
		}
		e.cfg.RunDir = d
	}
	e.dir = e.cfg.RunDir
	for _, d := range []string{e.dir, e.path("bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	// Where the hard limit cannot be raised (no CAP_SYS_RESOURCE), the
	// memory scenario opens fewer idle connections and says so.
	raiseNofile(1 << 18)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if e.selfExe, err = filepath.EvalSymlinks(exe); err != nil {
		return err
	}
	if p, err := exec.LookPath("h2load"); err == nil {
		e.h2loadExe, _ = filepath.EvalSymlinks(p)
	}

	if e.pki, err = pki.New(e.path("state/ca"), e.path("certs"), e.cfg.GID); err != nil {
		return err
	}
	upFiles, err := e.pki.Upstream()
	if err != nil {
		return err
	}
	if e.direct, err = e.pki.Client("direct"); err != nil {
		return err
	}
	if e.directTLS, err = load.DirectTLS(e.direct.Cert, e.direct.Key, e.direct.Bundle, pki.UpstreamID); err != nil {
		return err
	}
	if e.directH1, err = load.DirectTLS(e.direct.Cert, e.direct.Key, e.direct.Bundle, pki.UpstreamID, "http/1.1"); err != nil {
		return err
	}
	if err := e.startUpstream(upFiles); err != nil {
		return err
	}
	// The cold-identity processes run as other uids: they need their own
	// copy of this binary where every uid may execute it.
	if err := copyFile(e.selfExe, e.path("bin/procmesh-bench"), 0o755); err != nil {
		return err
	}
	e.coldExe = e.path("bin/procmesh-bench")
	e.manyExe = e.path("bin/manyprocs")
	src := filepath.Join(e.cfg.Repo, "bench/csrc/manyprocs.c")
	if out, err := exec.CommandContext(e.ctx, "cc", "-O2", "-o", e.manyExe, src).CombinedOutput(); err != nil {
		e.manyExe = ""
		e.errorf("compiling %s: %v: %s (cached-processes figure skipped)", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (e *env) startUpstream(f pki.Files) error {
	ready := e.path("upstream.json")
	argv := []string{e.selfExe, "upstream",
		"-cert", f.Cert, "-key", f.Key, "-bundle", f.Bundle, "-trust-domain", pki.TrustDomain,
		"-h1", "127.0.0.1:0", "-h2", "127.0.0.1:0", "-h3", "127.0.0.1:0", "-l4", "127.0.0.1:0",
		"-stats", "127.0.0.1:0", "-ready", ready}
	p, err := peers.Start("upstream", argv, []string{"GOMAXPROCS=2", "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"}, e.path("upstream.log"))
	if err != nil {
		return err
	}
	e.upstream = p
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil && len(b) > 0 {
			if err := json.Unmarshal(b, &e.up); err != nil {
				return fmt.Errorf("suite: upstream ready file: %w", err)
			}
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("suite: upstream did not start: %s", p.Tail(5))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// handshakes reads the upstream's handshake counters.
func (e *env) handshakes() ([]upstream.Handshake, error) {
	return upstream.FetchStats(e.ctx, e.up.Stats)
}

func (e *env) teardown() {
	for _, c := range e.contenders {
		c.stop()
	}
	e.stopInbound()
	e.upstream.Stop(5 * time.Second)
	if !e.cfg.KeepRunDir {
		os.RemoveAll(e.dir)
	}
}

func raiseNofile(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n && lim.Max >= n {
		return nil
	}
	want := syscall.Rlimit{Cur: n, Max: max(n, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not root: take what the hard limit allows.
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err2 != nil {
			return errors.Join(err, err2)
		}
		return fmt.Errorf("hard limit %d: %w", lim.Max, err)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
