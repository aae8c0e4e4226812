// Package peers generates the configuration of every proxy the suite runs
// (procmesh and its protection-cost variants, HAProxy, nginx, Envoy, Caddy)
// and starts and stops them as child processes of the harness.
//
// The configurations carry the suite's fairness settings (shared/ANCHORS.md
// "Fairness"): two workers each (GOMAXPROCS=2, nbthread 2,
// worker_processes 2, --concurrency 2), TLS 1.3 with
// TLS_AES_128_GCM_SHA256 and X25519 toward the upstream (where the proxy
// can pin them: Caddy 2.6 cannot, see Caddy), the upstream's
// certificate verified against the run's CA with SNI upstream.bench.test,
// and upstream connections kept alive and reused (http-reuse safe,
// keepalive 64). Every one listens on Unix sockets only, as procmesh does.
//
// It leaves out generating load (package load) and certificates (package
// pki).
package peers
