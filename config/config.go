// Package config reads procmesh's YAML configuration file.
//
// Loading is strict and happens in four steps: the YAML is decoded into a
// node tree and walked against the schema (unknown or duplicate keys, wrong
// types and malformed values are errors naming FILE:LINE), defaults are
// applied, the relations between settings are validated (route names and
// hosts unique, rules naming existing routes, trust bundles present for every
// upstream identity, no registration entries that could tie), and the result
// is returned with every string already turned into its Go type (SPIFFE IDs,
// durations, file modes, log levels). configs/example.yaml documents every
// key and its default.
//
// The package reads one file and nothing else: it does not check that the
// files it names exist (the packages that open them do), and it does not
// watch or reload.
package config

import (
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/registry"
)

// Defaults, applied to keys that are absent, null or "".
const (
	DefaultSocket       = "/run/procmesh/egress.sock"
	DefaultMode         = os.FileMode(0o660)
	DefaultProvider     = "builtin"
	DefaultStateDir     = "/var/lib/procmesh"
	DefaultSVIDTTL      = time.Hour
	DefaultMaxProcesses = 10000
	DefaultCacheTTL     = 5 * time.Minute
	DefaultPolicy       = "deny"
	DefaultLogLevel     = zerolog.InfoLevel
	DefaultProtocol     = "http1"
)

// Bounds of numeric settings.
const (
	MinSVIDTTL      = time.Minute
	MaxSVIDTTL      = 24 * time.Hour
	MinCacheTTL     = time.Second
	MaxCacheTTL     = time.Hour
	MaxMaxProcesses = 1_000_000
)

// Config is a loaded, defaulted and validated configuration file.
type Config struct {
	Path         string // file it was loaded from
	TrustDomain  spiffeid.TrustDomain
	Listen       Listen
	Identity     Identity
	Cache        Cache
	TrustBundles []TrustBundle
	Workloads    []Workload
	Routes       []Route
	Policy       Policy
	Log          Log
}

// Listen is the main (HTTP forward proxy) Unix socket.
type Listen struct {
	Socket string      // default /run/procmesh/egress.sock
	Mode   os.FileMode // default 0660; never world-writable
	Group  string      // group owning the socket; "" = procmesh's own gid
}

// Identity says where SVIDs come from.
type Identity struct {
	Provider string        // "builtin" (the only provider so far)
	StateDir string        // default /var/lib/procmesh; the builtin CA lives here
	CA       CAFiles       // operator CA; both empty = CA generated under StateDir
	SVIDTTL  time.Duration // key svid_ttl, default 1h, between 1m and 24h
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
}

// Route is an upstream service reachable through procmesh.
type Route struct {
	Name, Host, Upstream string               // upstream is host:port
	ServerID             spiffeid.ID          // zero => any ID in ServerTrustDomain
	ServerTrustDomain    spiffeid.TrustDomain // key server_trust_domain; at least one of server_id / server_trust_domain is set
	Protocol             string               // tcp | http1, default http1
	Socket               string               // per-route raw socket (protocol tcp only); "" = none
	SocketMode           os.FileMode          // key socket_mode, default = listen.mode
	Line                 int
}

// Policy is policy v0: rules allow `from` IDs to use `to` routes.
type Policy struct {
	Default string // "deny" (default) or "allow"
	Rules   []Rule
}

// Rule allows every ID in From to use every route in To.
type Rule struct {
	Name string // default "rule[N]", N its index in policy.rules
	From []spiffeid.ID
	To   []string
	Line int
}

// Log configures procmesh's own log and the audit log.
type Log struct {
	Level zerolog.Level // default info
	File  string        // "" = stderr
}

// DefaultAllow reports whether requests no rule matches are allowed.
func (p Policy) DefaultAllow() bool { return p.Default == "allow" }

// RegistryEntries returns the workloads as registry entries, Index being the
// position in workloads.
func (c *Config) RegistryEntries() []registry.Entry {
	out := make([]registry.Entry, len(c.Workloads))
	for i, w := range c.Workloads {
		out[i] = registry.Entry{ID: w.SPIFFEID, Selectors: w.Selectors, Index: i}
	}
	return out
}
