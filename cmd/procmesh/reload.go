package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/inbound"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/wlapi"
)

// reloader applies a changed config file to a running node: registration
// entries, trust bundles, routes and policy change in place; requests in
// flight finish under the config they started with. A file that does not
// load, or builds an invalid registry or policy, changes nothing: the last
// good config keeps serving and every problem is logged with FILE:LINE
// (THREATS F5).
type reloader struct {
	path    string
	n       *node
	srv     *proxy.Server
	in      *inbound.Server // nil in tests that build no inbound server
	wl      *wlapi.Server   // nil: no listen.workload_api
	log     zerolog.Logger
	started *config.Config // keys only a restart applies are compared to this
	// flushLog, when set, writes out buffered log lines after each reload,
	// so the outcome is in the log file at once.
	flushLog func() error
	// observe, when set, is told of every reload's outcome (admin.Monitor).
	observe func(why string, err error)

	mu  sync.Mutex
	sum [sha256.Size]byte // content last tried, applied or rejected
}

func newReloader(path string, n *node, srv *proxy.Server, log zerolog.Logger) *reloader {
	r := &reloader{path: path, n: n, srv: srv, log: log, started: n.cfg}
	if b, err := os.ReadFile(path); err == nil {
		r.sum = sha256.Sum256(b)
	}
	return r
}

// reload loads the file and applies it. why says what asked for it.
func (r *reloader) reload(why string) error {
	err := r.apply(why)
	if r.observe != nil {
		r.observe(why, err)
	}
	return err
}

// config is the config in force.
func (r *reloader) config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n.cfg
}

func (r *reloader) apply(why string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flushLog != nil {
		defer r.flushLog()
	}
	if b, err := os.ReadFile(r.path); err == nil {
		r.sum = sha256.Sum256(b)
	}
	cfg, err := config.Load(r.path)
	if err != nil {
		return r.reject(why, err)
	}
	reg, err := buildRegistry(cfg)
	if err != nil {
		return r.reject(why, err)
	}
	st, err := buildState(cfg)
	if err != nil {
		return r.reject(why, err)
	}
	bundles, err := loadBundles(cfg, r.n.ca)
	if err != nil {
		return r.reject(why, err)
	}
	listeners, err := inboundListeners(cfg)
	if err != nil {
		return r.reject(why, err)
	}
	// Inbound first: an address that cannot be bound rejects the reload
	// before anything else changed.
	if r.in != nil {
		if err := r.in.Apply(listeners, cfg.Shutdown.DrainTimeout); err != nil {
			return r.reject(why, fmt.Errorf("inbound: %w", err))
		}
	}
	for _, key := range restartOnly(r.started, cfg) {
		r.log.Warn().Str("key", key).Msg("config key changed; it takes effect at the next restart, the running value is kept")
	}
	// New trust first, so routes that need it verify; then identities;
	// then routes and policy, which also closes what is no longer allowed.
	tlsconf.SyncBundles(r.n.bundles, bundles)
	r.n.resolver.SetRegistry(reg)
	r.srv.SetState(st)
	if r.wl != nil {
		r.wl.SetAllowed(workloadAPIAllowed(cfg))
	}
	r.n.cfg = cfg
	r.log.Info().Str("reason", why).Str("config", r.path).Int("workloads", len(cfg.Workloads)).
		Int("routes", len(cfg.Routes)).Int("inbound", len(cfg.Inbound)).Int("policy_rules", len(cfg.Policy.Rules)).Msg("config reloaded")
	return nil
}

// reject logs why a reload was refused, one line per problem.
func (r *reloader) reject(why string, err error) error {
	problems := flatten(err)
	for _, p := range problems {
		r.log.Error().Str("reason", why).Str("problem", p.Error()).Msg("config reload rejected; the last good config keeps serving")
	}
	return fmt.Errorf("procmesh: reload of %s rejected (%d problems); the last good config keeps serving", r.path, len(problems))
}

// flatten lists the errors joined in err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// restartOnly names the keys that differ between the config procmesh
// started with and cfg but cannot change while it runs.
func restartOnly(old, cfg *config.Config) []string {
	// Line numbers move when lines above them do; they are not settings.
	oldLimits, newLimits := old.Limits, cfg.Limits
	oldLimits.Line, newLimits.Line = 0, 0
	oldUp, newUp := old.Upstream, cfg.Upstream
	oldUp.QUIC.Line, newUp.QUIC.Line = 0, 0
	oldListen, newListen := old.Listen, cfg.Listen // workload_api_ids is applied live
	oldListen.WorkloadAPIIDs, newListen.WorkloadAPIIDs = nil, nil
	oldAtt, newAtt := old.Attest, cfg.Attest
	oldAtt.Line, newAtt.Line = 0, 0
	oldAdmin, newAdmin := old.Admin, cfg.Admin
	oldAdmin.Line, newAdmin.Line = 0, 0
	var keys []string
	for key, pair := range map[string][2]any{
		"trust_domain": {old.TrustDomain, cfg.TrustDomain},
		"listen":       {oldListen, newListen},
		"identity":     {old.Identity, cfg.Identity},
		"cache":        {old.Cache, cfg.Cache},
		"attest":       {oldAtt, newAtt},
		"log":          {old.Log, cfg.Log},
		"limits":       {oldLimits, newLimits},
		"upstream":     {oldUp, newUp},
		"runtime":      {old.Runtime, cfg.Runtime},
		"admin":        {oldAdmin, newAdmin},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			keys = append(keys, key)
		}
	}
	for i := range cfg.Routes {
		for j := range old.Routes {
			if cfg.Routes[i].Name == old.Routes[j].Name && cfg.Routes[i].Socket != old.Routes[j].Socket {
				keys = append(keys, "routes["+cfg.Routes[i].Name+"].socket")
			}
		}
	}
	return keys
}

// watch reloads when the config file's content changes. It polls (inode,
// size, mtime) every interval — editors that write in place, editors that
// rename over the file and Kubernetes ConfigMap symlink swaps all show up —
// and reloads once the file has been stable for one interval and its
// content differs from what was last tried.
func (r *reloader) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := statKey(r.path)
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := statKey(r.path)
		if cur != last {
			last, pending = cur, true
			continue
		}
		if !pending {
			continue
		}
		pending = false
		b, err := os.ReadFile(r.path)
		if err != nil {
			r.log.Error().Err(err).Msg("config file unreadable; the last good config keeps serving")
			continue
		}
		r.mu.Lock()
		same := sha256.Sum256(b) == r.sum
		r.mu.Unlock()
		if !same {
			r.reload("config file changed")
		}
	}
}

type fileKey struct {
	ino, size uint64
	mtime     int64
}

func statKey(path string) fileKey {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileKey{}
	}
	return fileKey{ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim.Nano()}
}
