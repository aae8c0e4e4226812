package suite

import (
	"fmt"
	"math"
	"net/http"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/bench/report"
)

// Why peers cannot carry HTTP/2 or HTTP/3 upstream.
var (
	naH2 = map[string]string{
		report.Nginx: "nginx 1.22 cannot proxy HTTP/2 to an upstream (proxy_pass speaks HTTP/1.x)",
	}
	naH3 = map[string]string{
		report.HAProxy: "HAProxy 2.6 has no HTTP/3 toward servers",
		report.Nginx:   "nginx 1.22 has no HTTP/3 toward an upstream",
		report.Envoy:   "HTTP/3 upstreams are alpha in Envoy; the suite does not generate one",
		report.Caddy:   "Caddy 2.6.2 accepts reverse_proxy `versions 3`, but in a trial run it dialled the upstream's HTTP/3 port over TCP (connection refused, 502 to every request); not generated",
	}
)

func (e *env) h2h3Plan() *plan {
	sc := &report.Scenario{ID: "h2h3", Title: "HTTP/2 and HTTP/3 upstreams, 64 client connections, 1 KiB responses",
		How: fmt.Sprintf("Closed loop like the keep-alive scenario (the Go client, %d HTTP/1.1 connections on the Unix socket, Host `%s` or `%s`), but the proxy speaks HTTP/2 (ALPN h2) or HTTP/3 (QUIC) to the upstream, multiplexing the clients' requests. "+
			"procmesh: routes with `protocol: http2` / `protocol: http3`, included when `procmesh check` accepts them; HAProxy: a backend with `alpn h2,http/1.1` on a port that offers only h2; Envoy: a cluster with `http2_protocol_options` and ALPN h2; Caddy: reverse_proxy with `transport http { versions 2 }`. "+
			"Direct: Go's net/http (HTTP/2) and quic-go's http3 with %d concurrent requests, straight to the upstream.", e.cfg.KAConns, peers.HostH2, peers.HostH3, e.cfg.KAConns)}
	h2 := newMetric("h2_rps", "HTTP/2 upstream", "req/s", "higher", report.HAProxy, report.Direct)
	h2cpu := newMetric("h2_cpu", "HTTP/2 upstream, proxy CPU per request", "µs/req", "lower", report.HAProxy)
	h3 := newMetric("h3_rps", "HTTP/3 upstream", "req/s", "higher", report.Direct)
	h3cpu := newMetric("h3_cpu", "HTTP/3 upstream, proxy CPU per request", "µs/req", "lower")
	sc.Metrics = []*report.Metric{h2, h2cpu, h3, h3cpu}
	for name, why := range naH2 {
		h2.SetNA(name, why)
		h2cpu.SetNA(name, why)
	}
	for name, why := range naH3 {
		h3.SetNA(name, why)
		h3cpu.SetNA(name, why)
	}
	if e.h2NA != "" {
		h2.SetNA(report.Procmesh, e.h2NA)
		h2cpu.SetNA(report.Procmesh, e.h2NA)
	}
	if e.h3NA != "" {
		h3.SetNA(report.Procmesh, e.h3NA)
		h3cpu.SetNA(report.Procmesh, e.h3NA)
	}
	h2cpu.SetNA(report.Direct, "no proxy process")
	h3cpu.SetNA(report.Direct, "no proxy process")

	var steps []step
	for _, proto := range []struct {
		kind      string
		rps, cpu  *report.Metric
		host, url string
	}{
		{"h2", h2, h2cpu, peers.HostH2, "https://" + pki.UpstreamHost + "/1k"},
		{"h3", h3, h3cpu, peers.HostH3, "https://" + pki.UpstreamHost + "/1k"},
	} {
		for t := range e.cfg.Trials {
			for _, c := range e.rotate("h2h3", t) {
				if isNA(proto.rps, c.name) {
					continue
				}
				steps = append(steps, step{
					label: fmt.Sprintf("%s upstream, %s, trial %d/%d", proto.kind, c.name, t+1, e.cfg.Trials),
					run: func() string {
						var r load.ClosedResult
						meter := e.startCPU(c)
						if c.isDirect() {
							var rt http.RoundTripper
							if proto.kind == "h2" {
								tr := load.H2Transport(e.up.H2, e.directTLS)
								defer tr.CloseIdleConnections()
								rt = tr
							} else {
								tr := load.H3Transport(e.up.H3, e.directTLS)
								defer tr.Close()
								rt = tr
							}
							r = load.HTTPClosed{RoundTripper: rt, URL: proto.url, Workers: e.cfg.KAConns, Warmup: e.cfg.H2Warmup, Duration: e.cfg.H2Duration}.Run(e.ctx)
						} else {
							r = load.RunClosed(e.ctx, load.Closed{Dial: e.dialer(c, proto.kind), Request: load.Request(proto.host, "/1k"),
								Conns: e.cfg.KAConns, Warmup: e.cfg.H2Warmup, Duration: e.cfg.H2Duration})
						}
						perReq := meter.perRequest(r.All)
						if r.Requests == 0 {
							proto.rps.Add(c.name, math.NaN())
							if !c.isDirect() {
								proto.cpu.Add(c.name, math.NaN())
							}
							e.errorf("%s upstream, %s, trial %d: no request succeeded: %s", proto.kind, c.name, t+1, whyNone(r))
							return "error: " + whyNone(r)
						}
						proto.rps.Add(c.name, r.RPS())
						if !c.isDirect() {
							proto.cpu.Add(c.name, perReq)
						}
						return closedSummary(r, perReq)
					},
				})
			}
		}
	}
	e.markNA("h2h3", sc.Metrics...)
	return &plan{sc: sc, steps: steps}
}

func isNA(m *report.Metric, contestant string) bool {
	for _, r := range m.Rows {
		if r.Contestant == contestant {
			return r.NA != ""
		}
	}
	return false
}
