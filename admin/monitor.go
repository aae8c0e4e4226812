package admin

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// Sources are the components' own counters, read on each scrape and for
// the status page. A nil field is left out (Store with the SPIRE provider,
// SPIRE with the builtin one).
type Sources struct {
	Resolver  func() workload.Stats
	Processes func() []workload.CachedProcess
	Hashes    func() attest.HashStats
	Proxy     func() proxy.Stats
	Pools     func() []proxy.Pool
	Store     func() tlsconf.StoreStats
	SPIRE     func() spire.Stats
	// Provided is the SPIFFE ID a Provider gave a cached process, for
	// processes whose ID the Provider decides (SPIRE).
	Provided func(attest.Fingerprint) (spiffeid.ID, bool)
	Now      func() time.Time // default time.Now
}

// Monitor counts requests, connections, refusals and reloads, keeps the
// recent refusals and reloads for the status page, and exposes all of it,
// with the Sources, as Prometheus metrics. It is a proxy.Observer.
type Monitor struct {
	src     Sources
	version string
	reg     *prometheus.Registry
	ids     *labelCap

	requests    *prometheus.CounterVec
	connections *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	refusals    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	reloads     *prometheus.CounterVec
	wlapiRPCs   *prometheus.CounterVec
	inbound     *prometheus.CounterVec
	// The children of the vectors by their label values, so that a request
	// costs map lookups, not label hashing and allocations. Bounded as the
	// label values are.
	reqCounters  sync.Map // reqKey -> prometheus.Counter
	connCounters sync.Map // connKey -> prometheus.Counter
	durations    sync.Map // durKey -> prometheus.Observer
	inCounters   sync.Map // inKey -> prometheus.Counter

	mu         sync.Mutex
	recent     []Refusal // newest last, at most maxRecent
	history    []Reload  // newest last, at most maxReloads
	generation int
}

// Bounds of what the status page keeps.
const (
	maxRecent  = 50
	maxReloads = 20
)

var _ proxy.Observer = (*Monitor)(nil)

// NewMonitor returns a Monitor whose metrics registry holds its own
// metrics, the scrape-time view of src, and Go's runtime and process
// collectors. maxIDs bounds the SPIFFE IDs with label values of their own.
func NewMonitor(version string, maxIDs int, src Sources) *Monitor {
	if src.Now == nil {
		src.Now = time.Now
	}
	m := &Monitor{src: src, version: version, reg: prometheus.NewRegistry(), ids: newLabelCap(max(maxIDs, 1)), generation: 1}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "procmesh_requests_total",
		Help: "HTTP requests on the main socket by route, decision, status code and calling SPIFFE ID (capped: admin.max_identity_labels; the rest are \"other\")."},
		[]string{"route", "decision", "code", "spiffe_id"})
	m.connections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "procmesh_connections_total",
		Help: "CONNECT tunnels and route-socket connections by route, decision and calling SPIFFE ID (capped)."},
		[]string{"route", "decision", "spiffe_id"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "procmesh_request_duration_seconds",
		Help:    "Time from a request's (or connection's) start to its audit line, by kind and route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}},
		[]string{"kind", "route"})
	m.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "procmesh_attestation_refusals_total",
		Help: "Requests, connections and Workload API RPCs refused because the caller got no identity, by reason: connect_record (THREATS I11), foreign_writer (I12), provider (I14), foreign_mount_namespace (I16), traced and injected_code (I17), no_entry, rate_limited, process_gone, other."},
		[]string{"reason"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "procmesh_request_errors_total",
		Help: "Requests and connections ended by an error, by route and kind: dial and tls (the upstream), timeout, canceled, limit, foreign_writer, other."},
		[]string{"route", "kind"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "procmesh_config_reloads_total",
		Help: "Config reloads by result (applied, rejected)."}, []string{"result"})
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("rejected")
	m.wlapiRPCs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "procmesh_workload_api_rpcs_total",
		Help: "Workload API RPCs by RPC and gRPC outcome (OK, PermissionDenied, ...); rpc \"connection\" counts connections closed at the handshake."},
		[]string{"rpc", "outcome"})
	m.inbound = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "procmesh_inbound_total",
		Help: "Inbound listeners' handshakes refused, requests and tcp connections, by listener, kind (handshake, request, connection), decision and HTTP status code (\"none\" when none)."},
		[]string{"listener", "kind", "decision", "code"})
	m.reg.MustRegister(m.requests, m.connections, m.duration, m.refusals, m.errors, m.reloads, m.wlapiRPCs, m.inbound, scrape{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetProxy adds the proxy server's counters and pools to the Sources: the
// server is built after the Monitor, which it reports to.
func (m *Monitor) SetProxy(stats func() proxy.Stats, pools func() []proxy.Pool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.src.Proxy, m.src.Pools = stats, pools
}

// sources returns the Sources under m.mu.
func (m *Monitor) sources() Sources {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.src
}

// WorkloadAPI counts one Workload API RPC (wlapi.Options.Observe) and,
// when its caller got no identity, the refusal by reason, with the egress
// socket's reasons (THREATS I13 refusals are I11, I12, I17 ... ones).
func (m *Monitor) WorkloadAPI(rpc, outcome string, refusal error) {
	m.wlapiRPCs.WithLabelValues(rpc, outcome).Inc()
	if refusal == nil {
		return
	}
	m.refusals.WithLabelValues(proxy.RefusalKind(refusal)).Inc()
}

// Inbound counts one inbound audit line (inbound.Options.Observe): a
// handshake refused, a request or a tcp connection. Listener names are
// the config's, so the labels are bounded.
func (m *Monitor) Inbound(kind, listener, decision string, status int) {
	k := inKey{listener: listener, kind: kind, decision: decision, status: status}
	if c, ok := m.inCounters.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	code := "none"
	if status != 0 {
		code = strconv.Itoa(status)
	}
	c, _ := m.inCounters.LoadOrStore(k, m.inbound.WithLabelValues(listener, strings.TrimPrefix(kind, "inbound_"), decision, code))
	c.(prometheus.Counter).Inc()
}

// Registry is the metrics registry /metrics serves.
func (m *Monitor) Registry() *prometheus.Registry { return m.reg }

type (
	reqKey struct {
		route, decision, id string
		code                int
	}
	connKey struct{ route, decision, id string }
	durKey  struct{ kind, route string }
	inKey   struct {
		listener, kind, decision string
		status                   int
	}
)

// Observe counts one request or connection and remembers a refusal.
func (m *Monitor) Observe(ev proxy.Event) {
	route := ev.Route
	if route == "" {
		route = noneLabel
	}
	id := m.ids.value(ev.ID)
	switch ev.Kind {
	case "request":
		m.requestCounter(reqKey{route: route, decision: ev.Decision, id: id, code: ev.Status}).Inc()
	default:
		m.connCounter(connKey{route: route, decision: ev.Decision, id: id}).Inc()
	}
	m.durationObserver(durKey{kind: ev.Kind, route: route}).Observe(ev.Duration.Seconds())
	if k := proxy.ErrorKind(ev.Err); k != "" {
		m.errors.WithLabelValues(route, k).Inc()
	}
	if k := proxy.RefusalKind(ev.Refusal); k != "" {
		m.refusals.WithLabelValues(k).Inc()
		m.remember(ev, k)
	}
}

// requestCounter, connCounter and durationObserver return the child of
// their vector for k, made once.
func (m *Monitor) requestCounter(k reqKey) prometheus.Counter {
	if c, ok := m.reqCounters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	code := "none"
	if k.code != 0 {
		code = strconv.Itoa(k.code)
	}
	c, _ := m.reqCounters.LoadOrStore(k, m.requests.WithLabelValues(k.route, k.decision, code, k.id))
	return c.(prometheus.Counter)
}

func (m *Monitor) connCounter(k connKey) prometheus.Counter {
	if c, ok := m.connCounters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.connCounters.LoadOrStore(k, m.connections.WithLabelValues(k.route, k.decision, k.id))
	return c.(prometheus.Counter)
}

func (m *Monitor) durationObserver(k durKey) prometheus.Observer {
	if o, ok := m.durations.Load(k); ok {
		return o.(prometheus.Observer)
	}
	o, _ := m.durations.LoadOrStore(k, m.duration.WithLabelValues(k.kind, k.route))
	return o.(prometheus.Observer)
}

// remember keeps a refusal for the status page.
func (m *Monitor) remember(ev proxy.Event, kind string) {
	r := Refusal{At: m.src.Now(), PID: ev.PID, Kind: kind, Reason: ev.Refusal.Error(), Route: ev.Route}
	if p := ev.Process; p != nil {
		r.Exe, r.UID = p.ExePath, p.UID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.recent) == maxRecent {
		m.recent = append(m.recent[:0], m.recent[1:]...)
	}
	m.recent = append(m.recent, r)
}

// Reloaded records a reload: applied when err is nil, rejected otherwise.
func (m *Monitor) Reloaded(reason string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Reload{At: m.src.Now(), Reason: reason, Applied: err == nil}
	if err != nil {
		r.Error = err.Error()
		m.reloads.WithLabelValues("rejected").Inc()
	} else {
		m.generation++
		m.reloads.WithLabelValues("applied").Inc()
	}
	r.Generation = m.generation
	if len(m.history) == maxReloads {
		m.history = append(m.history[:0], m.history[1:]...)
	}
	m.history = append(m.history, r)
}

// scrape is the Collector that reads the Sources at each scrape.
type scrape struct{ m *Monitor }

var (
	descCacheEntries     = prometheus.NewDesc("procmesh_process_cache_entries", "Attested processes in the cache (cache.max_processes bounds it).", nil, nil)
	descCacheHits        = prometheus.NewDesc("procmesh_process_cache_hits_total", "Connections resolved from the process cache.", nil, nil)
	descCacheMisses      = prometheus.NewDesc("procmesh_process_cache_misses_total", "Attestations made: processes read from /proc (one per process per cache.ttl).", nil, nil)
	descCacheEvicted     = prometheus.NewDesc("procmesh_process_cache_evictions_total", "Processes pushed out of the full process cache.", nil, nil)
	descHashFiles        = prometheus.NewDesc("procmesh_exe_hash_files_total", "Executables read to be hashed (unix:sha256).", nil, nil)
	descHashBytes        = prometheus.NewDesc("procmesh_exe_hash_bytes_total", "Bytes of executables read to be hashed.", nil, nil)
	descFast             = prometheus.NewDesc("procmesh_http1_fast_requests_total", "HTTP/1.1 requests the fast path forwarded.", nil, nil)
	descHandoffs         = prometheus.NewDesc("procmesh_http1_handoffs_total", "Connections the HTTP/1.1 fast path handed to net/http.", nil, nil)
	descDials            = prometheus.NewDesc("procmesh_upstream_dials_total", "Upstream connections dialled (TCP and QUIC, successful or not), by route.", []string{"route"}, nil)
	descPreconnects      = prometheus.NewDesc("procmesh_upstream_preconnections_total", "Preconnections (routes[].preconnect: handshakes begun before an identity needed them) by route and how they ended: used, expired (closed unused), failed.", []string{"route", "outcome"}, nil)
	descPreconnectsReady = prometheus.NewDesc("procmesh_upstream_preconnections_ready", "Preconnections waiting for an identity now, by route.", []string{"route"}, nil)
	descH1Conns          = prometheus.NewDesc("procmesh_upstream_http1_connections", "HTTP/1.1 connections held by the pools of http1 routes, by route and state (idle, busy).", []string{"route", "state"}, nil)
	descPools            = prometheus.NewDesc("procmesh_upstream_pools", "Upstream connection pools open, one per (identity, route), by route.", []string{"route"}, nil)
	descMints            = prometheus.NewDesc("procmesh_svid_mints_total", "SVIDs the builtin CA issued for an identity that had no valid one.", nil, nil)
	descRenewals         = prometheus.NewDesc("procmesh_svid_renewals_total", "SVIDs the builtin CA issued while the previous one was still valid.", nil, nil)
	descMintFailures     = prometheus.NewDesc("procmesh_svid_issue_failures_total", "SVID issuances that failed.", nil, nil)
	descExpiry           = prometheus.NewDesc("procmesh_svid_expiry_seconds", "Seconds until the SVID held for a SPIFFE ID expires (negative: expired), by SPIFFE ID (capped).", []string{"spiffe_id"}, nil)
	descMinExpiry        = prometheus.NewDesc("procmesh_svid_min_expiry_seconds", "Seconds until the first SVID held expires; absent when none is held.", nil, nil)
	descSVIDs            = prometheus.NewDesc("procmesh_svids", "SVIDs held, one per SPIFFE ID.", nil, nil)
	descSPIREUp          = prometheus.NewDesc("procmesh_spire_agent_up", "1 while streams to the SPIRE agent answer, 0 from a stream error until one answers again.", nil, nil)
	descSPIREStreams     = prometheus.NewDesc("procmesh_spire_streams", "Open Delegated Identity API streams, one per process.", nil, nil)
	descSPIREBundles     = prometheus.NewDesc("procmesh_spire_bundles_received", "1 once the SPIRE agent sent its trust bundles.", nil, nil)
	descSPIREDownSecs    = prometheus.NewDesc("procmesh_spire_agent_down_seconds", "Seconds since the SPIRE agent stopped answering; 0 while it answers.", nil, nil)
	descBuild            = prometheus.NewDesc("procmesh_build_info", "procmesh's version, as a label; the value is 1.", []string{"version"}, nil)
	descGeneration       = prometheus.NewDesc("procmesh_config_generation", "Configs applied since start: 1 at start, one more per applied reload.", nil, nil)
)

func (s scrape) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheEntries, descCacheHits, descCacheMisses, descCacheEvicted, descHashFiles,
		descHashBytes, descFast, descHandoffs, descDials, descPreconnects, descPreconnectsReady, descH1Conns, descPools, descMints, descRenewals, descMintFailures, descExpiry, descMinExpiry,
		descSVIDs, descSPIREUp, descSPIREStreams, descSPIREBundles, descSPIREDownSecs, descBuild, descGeneration} {
		ch <- d
	}
}

func (s scrape) Collect(ch chan<- prometheus.Metric) {
	m, src := s.m, s.m.sources()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descBuild, 1, m.version)
	m.mu.Lock()
	gauge(descGeneration, float64(m.generation))
	m.mu.Unlock()
	if src.Resolver != nil {
		st := src.Resolver()
		gauge(descCacheEntries, float64(st.Cached))
		counter(descCacheHits, st.Hits)
		counter(descCacheMisses, st.Misses)
		counter(descCacheEvicted, st.Evictions)
	}
	if src.Hashes != nil {
		st := src.Hashes()
		counter(descHashFiles, st.Files)
		counter(descHashBytes, st.Bytes)
	}
	if src.Proxy != nil {
		st := src.Proxy()
		counter(descFast, uint64(st.FastRequests))
		counter(descHandoffs, uint64(st.Handoffs))
		for r, n := range st.Dials {
			ch <- prometheus.MustNewConstMetric(descDials, prometheus.CounterValue, float64(n), r)
		}
		for r, p := range st.Preconnects {
			ch <- prometheus.MustNewConstMetric(descPreconnects, prometheus.CounterValue, float64(p.Used), r, "used")
			ch <- prometheus.MustNewConstMetric(descPreconnects, prometheus.CounterValue, float64(p.Expired), r, "expired")
			ch <- prometheus.MustNewConstMetric(descPreconnects, prometheus.CounterValue, float64(p.Failed), r, "failed")
			gauge(descPreconnectsReady, float64(p.Ready), r)
		}
	}
	if src.Pools != nil {
		byRoute := map[string]int{}
		type conns struct{ idle, busy int }
		h1 := map[string]conns{}
		for _, p := range src.Pools() {
			byRoute[p.Route]++
			if p.Protocol == proxy.ProtocolHTTP1 {
				c := h1[p.Route]
				c.idle += p.Idle
				c.busy += p.Open - p.Idle
				h1[p.Route] = c
			}
		}
		for r, n := range byRoute {
			gauge(descPools, float64(n), r)
		}
		for r, c := range h1 {
			gauge(descH1Conns, float64(c.idle), r, "idle")
			gauge(descH1Conns, float64(c.busy), r, "busy")
		}
	}
	var expiries map[spiffeid.ID]time.Time
	if src.Store != nil {
		st := src.Store()
		counter(descMints, st.Mints)
		counter(descRenewals, st.Renewals)
		counter(descMintFailures, st.Failures)
		expiries = st.Expiries
	}
	if src.SPIRE != nil {
		st := src.SPIRE()
		up, bundles, down := 0.0, 0.0, 0.0
		if st.AgentUp {
			up = 1
		} else {
			down = src.Now().Sub(st.DownSince).Seconds()
		}
		if st.Bundles {
			bundles = 1
		}
		gauge(descSPIREUp, up)
		gauge(descSPIREStreams, float64(st.Streams))
		gauge(descSPIREBundles, bundles)
		gauge(descSPIREDownSecs, down)
		expiries = st.Expiries
	}
	now := src.Now()
	byLabel := map[string]float64{}
	first, seen := 0.0, false
	for id, at := range expiries {
		left := at.Sub(now).Seconds()
		if !seen || left < first {
			first, seen = left, true
		}
		// "other" shows the soonest expiry of the IDs it stands for.
		l := m.ids.value(id)
		if v, ok := byLabel[l]; !ok || left < v {
			byLabel[l] = left
		}
	}
	for l, v := range byLabel {
		gauge(descExpiry, v, l)
	}
	gauge(descSVIDs, float64(len(expiries)))
	if len(expiries) > 0 {
		gauge(descMinExpiry, first)
	}
}
