// Package config reads procmesh's YAML configuration file.
//
// Loading is strict and happens in four steps: the YAML is decoded into a
// node tree and walked against the schema (unknown or duplicate keys, wrong
// types and malformed values are errors naming FILE:LINE), defaults are
// applied, the relations between settings are validated (route names and
// hosts unique, rules naming existing routes, trust bundles present for every
// upstream identity, no registration entries that could tie, no policy rule
// that can never decide a request, limits consistent with each other), and
// the result is returned with every string already turned into its Go type
// (SPIFFE IDs and ID prefixes, durations, byte sizes, file modes, log
// levels, canonical header names). configs/example.yaml documents every key
// and its default.
//
// The package reads one file and nothing else: it does not check that the
// files it names exist (the packages that open them do), and it does not
// watch or reload.
package config

import (
	"crypto/tls"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/registry"
)

// Defaults, applied to keys that are absent, null or "".
const (
	DefaultSocket   = "/run/procmesh/egress.sock"
	DefaultMode     = os.FileMode(0o660)
	DefaultProvider = "builtin"
	// DefaultSPIREAdminSocket is identity.spire.admin_socket: the agent's
	// admin_socket_path.
	DefaultSPIREAdminSocket = "/run/spire/admin.sock"
	// DefaultSPIREFirstAnswerTimeout bounds the wait for SPIRE's first
	// answer about a new process.
	DefaultSPIREFirstAnswerTimeout = 5 * time.Second
	DefaultStateDir                = "/var/lib/procmesh"
	DefaultSVIDTTL                 = time.Hour
	DefaultJWTSVIDTTL              = 5 * time.Minute
	DefaultJWTKeyRotation          = 24 * time.Hour
	DefaultJWTSVIDHeader           = "Authorization"
	DefaultMaxProcesses            = 10000
	DefaultCacheTTL                = 5 * time.Minute
	DefaultPolicy                  = "deny"
	DefaultLogLevel                = zerolog.InfoLevel
	DefaultProtocol                = "http1"
	DefaultRuleMode                = "enforce"
)

// DefaultLogFlushInterval bounds how long a log or audit line waits in
// procmesh's buffer, and so what a crash can lose. Envoy's access logs wait
// up to 1s; but above ~1,600 lines/s the 64 KiB buffer fills first anyway,
// and below that batching saves next to nothing, so procmesh waits less.
const DefaultLogFlushInterval = 100 * time.Millisecond

// Defaults of limits, upstream, reload and shutdown (THREATS P5-P8, F5, F7,
// F9). A zero duration or size marked "off" disables that limit; the others
// cannot be turned off.
const (
	DefaultMaxRequestHeaderBytes     = 60 << 10 // Envoy's 60 KiB
	DefaultMaxRequestHeaders         = 100      // Envoy's max_headers_count
	DefaultMaxResponseHeaderBytes    = 60 << 10
	DefaultMaxResponseHeaders        = 100 // Envoy's cluster max_headers_count
	DefaultHeaderReadTimeout         = 10 * time.Second
	DefaultIdleTimeout               = 60 * time.Second // downstream keep-alive idle; Envoy's 1h suits a shared edge, not a node-local socket
	DefaultRequestTimeout            = 0                // off: streams and long polls must not be cut
	DefaultStreamIdleTimeout         = 5 * time.Minute  // Envoy's
	DefaultMaxConcurrentStreams      = 100              // per downstream HTTP/2 connection
	DefaultMaxConnections            = 10000
	DefaultMaxConnectionsPerIdentity = 1000
	DefaultMaxRequestBodyBytes       = 0 // off

	DefaultMaxUnattestedConnectionsPerUID = 64 // per uid, connections without an identity (F11)

	DefaultConnectTimeout        = 10 * time.Second
	DefaultUpstreamIdleTimeout   = 90 * time.Second // net/http's DefaultTransport
	DefaultMaxIdlePerPool        = 64
	DefaultResponseHeaderTimeout = 0 // off
	DefaultHTTP2ReadIdleTimeout  = 30 * time.Second
	DefaultCopyBufferSize        = 32 << 10 // above a 16 KiB TLS record
	DefaultGCPercent             = 100      // Go's
	MaxPreconnect                = 16       // routes[].preconnect

	DefaultQUICMaxIncomingStreams         = 100 // quic-go's
	DefaultQUICIdleTimeout                = 30 * time.Second
	DefaultQUICKeepAlivePeriod            = 15 * time.Second
	DefaultQUICMaxStreamReceiveWindow     = 6 << 20  // quic-go's
	DefaultQUICMaxConnectionReceiveWindow = 15 << 20 // quic-go's

	DefaultReloadWatch    = true
	DefaultReloadDebounce = 500 * time.Millisecond
	DefaultDrainTimeout   = 30 * time.Second
)

// Bounds of numeric settings.
const (
	MinSVIDTTL = time.Minute
	MaxSVIDTTL = 24 * time.Hour

	MinJWTSVIDTTL     = time.Minute
	MaxJWTSVIDTTL     = time.Hour
	MinJWTKeyRotation = time.Hour
	MaxJWTKeyRotation = 90 * 24 * time.Hour
	MinCacheTTL       = time.Second
	MaxCacheTTL       = time.Hour
	MaxMaxProcesses   = 1_000_000
)

// Config is a loaded, defaulted and validated configuration file.
type Config struct {
	Path         string // file it was loaded from
	TrustDomain  spiffeid.TrustDomain
	Listen       Listen
	Identity     Identity
	Cache        Cache
	Attest       Attest
	TrustBundles []TrustBundle
	Workloads    []Workload
	Routes       []Route
	Policy       Policy
	Limits       Limits
	Upstream     Upstream
	Reload       Reload
	Shutdown     Shutdown
	Runtime      Runtime
	Log          Log
	Inbound      []Inbound // key inbound; default none
	Admin        Admin
}

// Listen is the main (HTTP forward proxy) Unix socket.
type Listen struct {
	Socket string      // default /run/procmesh/egress.sock
	Mode   os.FileMode // default 0660; world-writable (0666) allowed: connections without an identity are bounded per uid (F11)
	Group  string      // group owning the socket; "" = procmesh's own gid
	// WorkloadAPI (key workload_api) is the socket of the SPIFFE Workload
	// API (package wlapi), with Mode and Group too; "" (default) = off.
	WorkloadAPI string
	// WorkloadAPIIDs (key workload_api_ids) are the identities whose
	// processes may use the Workload API, which hands a process its private
	// key: exact IDs or prefixes ("spiffe://example.org/team/*";
	// "spiffe://example.org/*" is the whole trust domain). Required when
	// WorkloadAPI is set; applied live on reload.
	WorkloadAPIIDs []Caller
}

// Identity says where SVIDs come from.
type Identity struct {
	Provider string        // "builtin" (default) or "spire"
	SPIRE    SPIRE         // provider spire: the agent's Delegated Identity API
	StateDir string        // default /var/lib/procmesh; the builtin CA lives here
	CA       CAFiles       // operator CA; both empty = CA generated under StateDir
	SVIDTTL  time.Duration // key svid_ttl, default 1h, between 1m and 24h
	// JWTSVIDTTL (key jwt_svid_ttl, default 5m, between 1m and 1h) is the
	// lifetime of the JWT-SVIDs the builtin CA signs; JWTKeyRotation (key
	// jwt_key_rotation, default 24h, between 1h and 90 days) how long one
	// JWT signing key signs. Provider builtin only: SPIRE sets its own.
	JWTSVIDTTL     time.Duration
	JWTKeyRotation time.Duration
}

// SPIRE is identity.spire: where the SPIRE agent's admin socket is.
type SPIRE struct {
	AdminSocket        string        // default /run/spire/admin.sock
	FirstAnswerTimeout time.Duration // default 5s, between 100ms and 5m
}

// CAFiles names an operator-provided CA certificate (chain) and key.
type CAFiles struct{ Cert, Key string }

// Cache bounds the per-process attestation cache.
type Cache struct {
	MaxProcesses int           // default 10000
	TTL          time.Duration // key cache.ttl, default 5m, between 1s and 1h
}

// TrustBundle is a PEM file of CA certificates for a foreign trust domain.
type TrustBundle struct {
	TrustDomain spiffeid.TrustDomain
	File        string
	Line        int // line of the entry in Config.Path
}

// Workload is a registration entry: processes with all Selectors get SPIFFEID.
type Workload struct {
	SPIFFEID  spiffeid.ID
	Selectors []string // as written, each checked by registry.ParseSelector
	Line      int
	// Allow (key allow) accepts processes the entry would otherwise refuse
	// (THREATS I17): Traced (key traced, default false) a process traced by
	// another, InjectedCode (key injected_code, default false) one running
	// a dynamic-loader override or a library from outside the system
	// library directories.
	Allow registry.Allow
}

// Route is an upstream service reachable through procmesh.
type Route struct {
	Name, Host, Upstream string               // upstream is host:port
	ServerID             spiffeid.ID          // zero => any ID in ServerTrustDomain
	ServerTrustDomain    spiffeid.TrustDomain // key server_trust_domain; at least one of server_id / server_trust_domain is set
	Protocol             string               // tcp | http1 | http2 | http3 | auto, default http1
	ALPN                 []string             // protocol IDs offered on CONNECT tunnels and the raw socket; nil = by protocol
	Socket               string               // per-route raw socket (protocol tcp only); "" = none
	SocketMode           os.FileMode          // key socket_mode, default = listen.mode
	JWTSVID              JWTSVID              // key jwt_svid; zero = no token attached
	Preconnect           int                  // key preconnect, 0-16, http1 only: TLS handshakes kept ready for new identities; 0 = none
	Line                 int
}

// JWTSVID is routes[].jwt_svid: procmesh attaches the caller's JWT-SVID
// for Audience to every HTTP request on the route, in Header.
type JWTSVID struct {
	Audience []string // key audience; empty = off; the first is the primary audience
	Header   string   // key header, canonical; default Authorization ("Bearer <token>"), else the bare token
}

// On reports whether the route attaches a JWT-SVID.
func (j JWTSVID) On() bool { return len(j.Audience) > 0 }

// Policy is the ordered allow rules and the default; package policy
// documents how they decide (PolicyRules converts them).
type Policy struct {
	Default string // "deny" (default) or "allow"
	Rules   []Rule
}

// Rule allows its callers to reach its routes; every condition set must hold.
type Rule struct {
	Name      string            // default "rule[N]", N its index in policy.rules
	From      []Caller          // exact IDs or prefixes; at least one of from and selectors
	Selectors []string          // the calling process must have all; each checked by registry.ParseSelector
	To        []string          // route names
	Methods   []string          // upper case; nil = any
	Paths     []string          // "/a/b" exact or "/a/*" prefix, normalised; nil = any
	Headers   map[string]string // canonical header name -> exact value; nil = none
	Mode      string            // "enforce" (default) or "audit"
	Line      int
}

// Caller is one entry of a rule's from: a SPIFFE ID, or with Prefix every
// ID strictly under it (written "spiffe://example.org/team-a/*"; the ID of a
// trust domain, "spiffe://example.org/*", covers every ID in it).
type Caller struct {
	ID     spiffeid.ID
	Prefix bool
}

// Matches reports whether id is the caller's ID or, for a prefix, below it.
func (c Caller) Matches(id spiffeid.ID) bool {
	if !c.Prefix {
		return id == c.ID
	}
	return strings.HasPrefix(id.String(), c.ID.String()+"/")
}

// String writes the caller as in the file.
func (c Caller) String() string {
	if c.Prefix {
		return c.ID.String() + "/*"
	}
	return c.ID.String()
}

// Limits bound what clients of the Unix sockets may make procmesh hold
// (THREATS P5, P7, P8, F9). Sizes are bytes.
type Limits struct {
	MaxRequestHeaderBytes     int64         // default 60KiB; 1KiB-8MiB
	MaxRequestHeaders         int           // default 100; 1-10000
	MaxResponseHeaderBytes    int64         // default 60KiB; 1KiB-8MiB
	MaxResponseHeaders        int           // default 100; 1-10000; header fields of an upstream response
	HeaderReadTimeout         time.Duration // default 10s; 1s-10m
	IdleTimeout               time.Duration // default 60s; 1s-24h; a client connection with no request in flight
	RequestTimeout            time.Duration // default 0 = off; else 1s-24h; a whole request and response
	StreamIdleTimeout         time.Duration // default 5m; 1s-24h; a request or tunnel moving no bytes
	MaxConcurrentStreams      int           // default 100; 1-10000; per downstream HTTP/2 connection
	MaxConnections            int           // default 10000; 1-1000000; all sockets together
	MaxConnectionsPerIdentity int           // default 1000; 1-1000000, at most MaxConnections
	MaxRequestBodyBytes       int64         // default 0 = unlimited; else 1B-1TiB
	Line                      int           // line of the limits section; 0 when absent

	// MaxUnattestedConnectionsPerUID: key max_unattested_connections_per_uid;
	// default 64; 1-1000000, below MaxConnections; connections of one uid
	// without an identity yet (THREATS F11).
	MaxUnattestedConnectionsPerUID int
}

// Upstream tunes procmesh's connections to upstreams.
type Upstream struct {
	ConnectTimeout        time.Duration // default 10s; 100ms-5m; TCP connect plus TLS handshake
	IdleTimeout           time.Duration // default 90s; 1s-24h; an idle pooled connection is closed
	MaxIdlePerPool        int           // default 64; 1-10000; per (identity, route) pool
	ResponseHeaderTimeout time.Duration // default 0 = off; else 1s-1h
	HTTP2ReadIdleTimeout  time.Duration // default 30s; 1s-1h; ping an HTTP/2 connection silent this long
	CopyBufferSize        int64         // default 32KiB; 4KiB-1MiB; per copy in flight (tunnels, raw sockets, bodies)
	TLSCurves             []tls.CurveID // key tls_curves; default nil = Go's list (hybrid post-quantum first); key exchanges offered in every upstream handshake
	TLSRecordSizing       string        // key tls_record_sizing; default "dynamic" (Go's: small records for a connection's first ~1 MB); "max": 16 KiB records from the start
	QUIC                  QUIC

	// RequestHeadersToRemove: key request_headers_to_remove; request fields
	// never forwarded (THREATS P9), canonical; default
	// DefaultRequestHeadersToRemove(); [] = none besides the hop-by-hop,
	// framing and Forwarded fields procmesh always removes.
	RequestHeadersToRemove []string
}

// Runtime tunes the Go runtime procmesh runs on. It applies at start only.
type Runtime struct {
	MaxProcs    int   // key max_procs; default 0 = every CPU the process may use (GOMAXPROCS)
	GCPercent   int   // key gc_percent; default 100 (Go's); 10-10000; higher trades memory for CPU
	MemoryLimit int64 // key memory_limit; default 0 = none; soft limit (GOMEMLIMIT), 16MiB-1TiB
}

// QUIC tunes HTTP/3 upstream connections (quic-go's Config).
type QUIC struct {
	MaxIncomingStreams         int64         // default 100; 1-100000
	IdleTimeout                time.Duration // default 30s; 1s-1h
	KeepAlivePeriod            time.Duration // default 15s; 1s-1h, below IdleTimeout
	MaxStreamReceiveWindow     int64         // default 6MiB; 64KiB-1GiB
	MaxConnectionReceiveWindow int64         // default 15MiB; 64KiB-1GiB, at least MaxStreamReceiveWindow
	Line                       int           // line of the upstream.quic section; 0 when absent
}

// Reload says when procmesh re-reads its config file (SIGHUP always does).
type Reload struct {
	Watch    bool          // default true: reload when the file changes
	Debounce time.Duration // default 500ms; 10ms-1m; wait for writes to settle
}

// Shutdown bounds draining on SIGTERM (THREATS F7).
type Shutdown struct {
	DrainTimeout time.Duration // default 30s; 1s-1h
}

// Log configures procmesh's own log and the audit log.
type Log struct {
	Level         zerolog.Level // default info
	File          string        // "" = stderr
	FlushInterval time.Duration // key flush_interval; default 100ms; 0 = every line written at once; else 1ms-1m
}

// DefaultAllow reports whether requests no rule matches are allowed.
func (p Policy) DefaultAllow() bool { return p.Default == "allow" }

// RegistryEntries returns the workloads as registry entries, Index being the
// position in workloads.
func (c *Config) RegistryEntries() []registry.Entry {
	out := make([]registry.Entry, len(c.Workloads))
	for i, w := range c.Workloads {
		out[i] = registry.Entry{ID: w.SPIFFEID, Selectors: w.Selectors, Allow: w.Allow, Index: i}
	}
	return out
}
