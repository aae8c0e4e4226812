package main

import (
	"context"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/wlapi"
)

// serveWorkloadAPI opens listen.workload_api, when set, and serves the
// SPIFFE Workload API on it (package wlapi) over the node's resolver and
// identity source: callers are attested as egress callers are. The socket
// is created as listen's (mode, group, SO_PASSCRED before any client can
// connect). A change of listen.workload_api takes effect at the next
// restart, as listen's other keys; listen.workload_api_ids at once.
func (rn *running) serveWorkloadAPI(cfg *config.Config, gid int, log zerolog.Logger) error {
	if cfg.Listen.WorkloadAPI == "" {
		return nil
	}
	var observe func(rpc, outcome string, refusal error)
	if rn.monitor != nil {
		observe = rn.monitor.WorkloadAPI
	}
	srv, err := wlapi.New(wlapi.Options{
		Resolver:            rn.n.resolver,
		Source:              rn.n.src,
		Alive:               rn.n.att.Alive,
		AttestTimeout:       max(30*time.Second, cfg.Identity.SPIRE.FirstAnswerTimeout+5*time.Second),
		MaxUnattestedPerUID: cfg.Limits.MaxUnattestedConnectionsPerUID,
		Allowed:             workloadAPIAllowed(cfg),
		Observe:             observe,
		Logger:              log,
		Audit:               log.Level(zerolog.InfoLevel).With().Str("log", "audit").Logger(),
	})
	if err != nil {
		return err
	}
	s, err := proxy.Listen(proxy.ListenOptions{Path: cfg.Listen.WorkloadAPI, Mode: cfg.Listen.Mode, GID: gid})
	if err != nil {
		return err
	}
	rn.wl = srv
	rn.sockets = append(rn.sockets, s)
	go func() { rn.errc <- srv.Serve(s) }()
	log.Info().Str("socket", cfg.Listen.WorkloadAPI).Msg("SPIFFE Workload API served")
	return nil
}

// stopWorkloadAPI ends the Workload API's streams and closes its
// connections, waiting for RPCs in flight up to drain.
func (rn *running) stopWorkloadAPI(drain time.Duration) {
	if rn.wl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	rn.wl.Shutdown(ctx)
}

// workloadAPIAllowed is listen.workload_api_ids as a test of a SPIFFE ID.
func workloadAPIAllowed(cfg *config.Config) func(spiffeid.ID) bool {
	ids := cfg.Listen.WorkloadAPIIDs
	return func(id spiffeid.ID) bool {
		return slices.ContainsFunc(ids, func(c config.Caller) bool { return c.Matches(id) })
	}
}
