package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/admin"
	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/internal/explain"
	"github.com/procmesh/procmesh/proxy"
)

// newMonitor builds the metrics and status Monitor over n's components,
// or nil when the admin listener is off.
func newMonitor(cfg *config.Config, n *node) *admin.Monitor {
	if cfg.Admin.Listen == "" {
		return nil
	}
	src := admin.Sources{
		Resolver:  n.resolver.Stats,
		Processes: n.resolver.Processes,
		Hashes:    n.att.HashStats,
	}
	if n.store != nil {
		src.Store = n.store.Stats
	}
	if n.spire != nil {
		src.SPIRE = n.spire.Stats
		src.Provided = func(fp attest.Fingerprint) (spiffeid.ID, bool) {
			if ans, ok := n.spire.Lookup(fp); ok && len(ans.SVIDs) > 0 {
				return ans.SVIDs[0].ID, true
			}
			return spiffeid.ID{}, false
		}
	}
	return admin.NewMonitor(version(), cfg.Admin.MaxIdentityLabels, src)
}

// startAdmin serves the admin listener of a started node. The monitor
// reads the server's counters from now on.
func (rn *running) startAdmin(cfg *config.Config, log zerolog.Logger) error {
	if rn.monitor == nil {
		return nil
	}
	rn.monitor.SetProxy(rn.srv.Stats, rn.srv.Pools)
	srv, err := admin.Start(admin.Options{
		Listen:  cfg.Admin.Listen,
		Pprof:   cfg.Admin.Pprof,
		Logger:  log,
		Monitor: rn.monitor,
		Info: admin.Info{Started: time.Now(), ConfigPath: cfg.Path, Provider: cfg.Identity.Provider,
			TrustDomain: cfg.TrustDomain.String()},
		Ready:   rn.ready,
		Explain: rn.explain,
	})
	if err != nil {
		return err
	}
	rn.admin = srv
	log.Info().Str("admin", srv.Addr()).Bool("pprof", cfg.Admin.Pprof).Msg("admin listener serving /metrics, /healthz, /readyz and the status page")
	return nil
}

// stopAdmin closes the admin listener, if any.
func (rn *running) stopAdmin() {
	if rn.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rn.admin.Close(ctx)
	}
}

// ready is /readyz: the sockets are bound, and the identity source can
// issue (the builtin CA is loaded; the SPIRE agent answers and sent its
// bundles).
func (rn *running) ready() []admin.Check {
	checks := []admin.Check{{Name: "listeners", OK: len(rn.sockets) > 0,
		Detail: fmt.Sprintf("Unix sockets bound: %d", len(rn.sockets))}}
	n := rn.n
	switch {
	case n.spire != nil:
		st := n.spire.Stats()
		c := admin.Check{Name: "identity", OK: st.AgentUp && st.Bundles, Detail: "the SPIRE agent answers and sent its trust bundles"}
		switch {
		case !st.AgentUp:
			c.Detail = fmt.Sprintf("the SPIRE agent has not answered since %s: %s", st.DownSince.UTC().Format(time.RFC3339), st.LastError)
		case !st.Bundles:
			c.Detail = "the SPIRE agent has not sent its trust bundles yet"
		}
		checks = append(checks, c)
	case n.ca != nil:
		checks = append(checks, admin.Check{Name: "identity", OK: true, Detail: "builtin CA loaded"})
	}
	return checks
}

// explain is the admin listener's /explain: the explain command's view of
// pid under the config in force now.
func (rn *running) explain(w io.Writer, pid int32) error {
	cfg := rn.reloader.config()
	reg, err := buildRegistry(cfg)
	if err != nil {
		return err
	}
	pol, err := buildPolicy(cfg)
	if err != nil {
		return err
	}
	record := "off or unavailable: procmesh attests from /proc alone (see the log at start)"
	if rn.n.records != nil {
		record = "on (BPF cgroup/connect_unix at " + rn.n.records.CgroupRoot() + "): the identity is that of the program that ran at connect()"
	}
	return explain.Process(w, explain.Node{Config: cfg, Registry: reg, Policy: pol, Attestor: rn.n.att, ConnectRecord: record}, pid, nil)
}

// observe returns the proxy Observer: the monitor when there is one.
func observe(mon *admin.Monitor) proxy.Observer {
	if mon == nil {
		return nil
	}
	return mon
}

// noteWorldConnectable logs, once at start, that a world-connectable
// socket mode lets every uid on the node connect, and what bounds them.
func noteWorldConnectable(cfg *config.Config, log zerolog.Logger) {
	if cfg.Listen.Mode&0o002 == 0 {
		return
	}
	log.Info().Str("mode", fmt.Sprintf("%04o", uint32(cfg.Listen.Mode))).Int("max_unattested_connections_per_uid", cfg.Limits.MaxUnattestedConnectionsPerUID).
		Msg("listen.mode lets every uid on the node connect: attestation decides what each process gets; connections without an identity are bounded per uid (THREATS F11); use a group (listen.group, mode 0660) to keep other uids out")
}
