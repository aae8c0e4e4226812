// Package admin is procmesh's admin listener: Prometheus metrics at
// /metrics, liveness at /healthz, readiness at /readyz, a status page at /
// (identities with their processes, SVID expiry, upstream pools, recent
// refusals with an explain view of each process, config generation and
// reload history), its JSON form at /status.json for `procmesh status`, and,
// only when configured, Go's profiler under /debug/pprof/.
//
// It listens on loopback TCP or a Unix socket (config admin.listen) and
// never serves application traffic. Metrics live in a registry of their
// own (no global state): the Monitor counts what the proxy tells it
// (proxy.Observer) and, on each scrape, reads the components' own counters
// (workload, tlsconf, spire and proxy Stats). SPIFFE IDs appear as label
// values only up to a configured number (admin.max_identity_labels); the
// rest are counted as "other", so the number of series stays bounded.
package admin
