// Package spiretest runs a real SPIRE server and agent for procmesh's
// tests: the binaries test/spire/build.sh builds (`make spire-bin`), a join
// token, sqlite, disk key managers (the agent survives a restart), an admin
// socket whose authorized delegate is the test binary itself, and fast
// entry propagation. Entries are created with `spire-server entry create`.
//
// When the binaries are missing the test fails, naming the make target: it
// never skips.
package spiretest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TrustDomain is the test deployment's trust domain.
const TrustDomain = "example.org"

// NodeID is the alias entry every workload entry is parented to.
const NodeID = "spiffe://example.org/node/test"

// DelegateID is the SPIFFE ID of the test binary, the authorized delegate.
const DelegateID = "spiffe://example.org/procmesh"

// SPIRE is a running server and agent.
type SPIRE struct {
	t    testing.TB
	Bin  string // directory of spire-server and spire-agent
	Dir  string // configs, data, sockets and logs
	port int

	ServerSocket, AgentSocket, AdminSocket string

	mu    sync.Mutex
	agent *daemon
	procs []*daemon
}

// daemon is a started server or agent; exit is closed once it was waited
// for (only its own goroutine waits).
type daemon struct {
	cmd  *exec.Cmd
	exit chan struct{}
}

func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.exit
}

// BinDir finds the directory `make spire-bin` builds into, the way
// test/spire/build.sh names it: PROCMESH_SPIRE_BIN, else
// ${XDG_CACHE_HOME:-$HOME/.cache}/procmesh-spire/<version>-<hash>, the
// hash of go.sum, build.sh (its build flags and the plugins it keeps) and
// prune/main.go.
func BinDir() (string, error) {
	if d := os.Getenv("PROCMESH_SPIRE_BIN"); d != "" {
		return d, nil
	}
	mod, err := spireModule()
	if err != nil {
		return "", err
	}
	gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/spiffe/spire (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		return "", fmt.Errorf("%s/go.mod does not require github.com/spiffe/spire", mod)
	}
	// The order is build.sh's: cat go.sum build.sh prune/main.go.
	h := sha256.New()
	for _, f := range []string{"go.sum", "build.sh", "prune/main.go"} {
		b, err := os.ReadFile(filepath.Join(mod, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "procmesh-spire", string(m[1])+"-"+hex.EncodeToString(h.Sum(nil))[:12]), nil
}

// spireModule finds test/spire from the working directory up.
func spireModule() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod := filepath.Join(dir, "test", "spire")
		if _, err := os.Stat(filepath.Join(mod, "go.mod")); err == nil {
			return mod, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("test/spire/go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Options tune Start.
type Options struct {
	// Delegate is the executable allowed as the delegate (its unix:path
	// selector). Default: the test binary.
	Delegate string
	// AgentConfig is added inside the agent's `agent {}` block.
	AgentConfig string
	// NoDelegateEntry leaves out the delegate's registration entry: the
	// agent then refuses the test binary on its admin API.
	NoDelegateEntry bool
	// UnixPluginData is added to the unix workload attestor's
	// plugin_data (after discover_workload_path = true).
	UnixPluginData string
}

// Start runs a server and an agent and waits until the agent's admin API
// accepts the test binary as a delegate. Everything stops at the end of
// the test.
func Start(t testing.TB, opts Options) *SPIRE {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		t.Fatalf("spiretest: finding the SPIRE binaries: %v", err)
	}
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("spiretest: SPIRE is not built (%v): run `make spire-bin` (test/spire/build.sh; a cold build takes minutes); `make test` does it first", err)
		}
	}
	if opts.Delegate == "" {
		if opts.Delegate, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	// Unix socket paths are short: not under t.TempDir().
	dir, err := os.MkdirTemp("", "spire-")
	if err != nil {
		t.Fatal(err)
	}
	s := &SPIRE{t: t, Bin: bin, Dir: dir, port: freePort(t),
		ServerSocket: filepath.Join(dir, "server", "api.sock"),
		AgentSocket:  filepath.Join(dir, "agent", "api.sock"),
		AdminSocket:  filepath.Join(dir, "admin", "admin.sock")}
	t.Cleanup(func() {
		s.stopAll()
		if t.Failed() {
			s.dumpLogs()
		}
		os.RemoveAll(dir)
	})
	for _, d := range []string{"server", "agent", "admin", "server-data", "agent-data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.writeConfigs(opts)
	s.start("server", filepath.Join(bin, "spire-server"), "run", "-config", filepath.Join(dir, "server.conf"))
	s.waitFor("server healthy", func() error {
		_, err := s.Server("healthcheck")
		return err
	})
	out, err := s.Server("token", "generate", "-spiffeID", NodeID)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Token:"))
	s.StartAgent("-joinToken", token)
	if opts.NoDelegateEntry {
		return s
	}
	s.CreateEntry(DelegateID, "unix:path:"+opts.Delegate)
	s.waitFor("the agent accepting the test binary as a delegate", func() error {
		_, err := s.Fetch(context.Background(), "unix:uid:0")
		return err
	})
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *SPIRE) writeConfigs(opts Options) {
	d := s.Dir
	server := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%d"
  socket_path = "%s"
  trust_domain = "%s"
  data_dir = "%s/server-data"
  log_level = "DEBUG"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  experimental { cache_reload_interval = "500ms" }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "%s/server-data/datastore.sqlite3"
    }
  }
  KeyManager "disk" { plugin_data { keys_path = "%s/server-data/keys.json" } }
  NodeAttestor "join_token" { plugin_data {} }
}
`, s.port, s.ServerSocket, TrustDomain, d, d, d)
	agent := fmt.Sprintf(`agent {
  data_dir = "%s/agent-data"
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "%d"
  socket_path = "%s"
  admin_socket_path = "%s"
  trust_domain = "%s"
  insecure_bootstrap = true
  authorized_delegates = ["%s"]
  experimental { sync_interval = "500ms" }
  %s
}
plugins {
  NodeAttestor "join_token" { plugin_data {} }
  KeyManager "disk" { plugin_data { directory = "%s/agent-data" } }
  WorkloadAttestor "unix" { plugin_data {
    discover_workload_path = true
    %s
  } }
}
`, d, s.port, s.AgentSocket, s.AdminSocket, TrustDomain, DelegateID, opts.AgentConfig, d, opts.UnixPluginData)
	for name, body := range map[string]string{"server.conf": server, "agent.conf": agent} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
}

// start runs a SPIRE binary with its output in Dir/<name>.log.
func (s *SPIRE) start(name, bin string, args ...string) *daemon {
	log, err := os.OpenFile(filepath.Join(s.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		s.t.Fatalf("spiretest: starting %s: %v", name, err)
	}
	log.Close()
	d := &daemon{cmd: cmd, exit: make(chan struct{})}
	go func() { cmd.Wait(); close(d.exit) }()
	s.mu.Lock()
	s.procs = append(s.procs, d)
	s.mu.Unlock()
	return d
}

// StartAgent starts the agent (args: -joinToken on the first start) and
// waits until it is healthy.
func (s *SPIRE) StartAgent(args ...string) {
	s.t.Helper()
	args = append([]string{"run", "-config", filepath.Join(s.Dir, "agent.conf")}, args...)
	d := s.start("agent", filepath.Join(s.Bin, "spire-agent"), args...)
	s.mu.Lock()
	s.agent = d
	s.mu.Unlock()
	s.waitFor("agent healthy", func() error {
		select {
		case <-d.exit:
			return errors.New("the agent exited")
		default:
		}
		out, err := exec.Command(filepath.Join(s.Bin, "spire-agent"), "healthcheck", "-socketPath", s.AgentSocket).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// KillAgent kills the agent (SIGKILL) and waits for it to exit; its admin
// socket file stays behind, as after a crash.
func (s *SPIRE) KillAgent() {
	s.mu.Lock()
	d := s.agent
	s.agent = nil
	s.mu.Unlock()
	if d != nil {
		d.kill()
	}
}

func (s *SPIRE) stopAll() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].kill()
	}
}

func (s *SPIRE) dumpLogs() {
	for _, name := range []string{"server", "agent"} {
		b, _ := os.ReadFile(filepath.Join(s.Dir, name+".log"))
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		s.t.Logf("--- tail of spire-%s log:\n%s", name, b)
	}
}

func (s *SPIRE) waitFor(what string, f func() error) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.dumpLogs()
	s.t.Fatalf("spiretest: waiting for %s: %v", what, err)
}
