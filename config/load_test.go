package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

func td(s string) spiffeid.TrustDomain { return spiffeid.RequireTrustDomainFromString(s) }
func sid(s string) spiffeid.ID         { return spiffeid.RequireFromString(s) }

// TestLoadFull: a file setting every key to a non-default value comes back
// as exactly these Go values.
func TestLoadFull(t *testing.T) {
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:        "testdata/full.yaml",
		TrustDomain: td("prod.example.com"),
		Listen:      Listen{Socket: "/run/pm/main.sock", Mode: 0o600, Group: "procmesh-clients"},
		Identity: Identity{
			Provider: "builtin",
			SPIRE:    SPIRE{AdminSocket: DefaultSPIREAdminSocket, FirstAnswerTimeout: DefaultSPIREFirstAnswerTimeout},
			StateDir: "/srv/procmesh/state",
			CA:       CAFiles{Cert: "/etc/pm/ca-chain.pem", Key: "/etc/pm/ca.key"},
			SVIDTTL:  30 * time.Minute,

			JWTSVIDTTL:     DefaultJWTSVIDTTL,
			JWTKeyRotation: DefaultJWTKeyRotation,
		},
		Cache:  Cache{MaxProcesses: 500, TTL: 90 * time.Second},
		Attest: Attest{ConnectRecord: "required", ForeignWriter: "attest", HashSizeLimit: 64 << 20, MaxConcurrentHashes: 4, RatePerUID: 20, BurstPerUID: 40, Line: 115},
		TrustBundles: []TrustBundle{
			{TrustDomain: td("upstream.test"), File: "/etc/pm/upstream.pem", Line: 18},
			{TrustDomain: td("partner.example"), File: "/etc/pm/partner.pem", Line: 20},
		},
		Workloads: []Workload{
			{SPIFFEID: sid("spiffe://prod.example.com/billing"), Selectors: []string{"unix:uid:1000", "unix:path:/usr/bin/billing"}, Line: 22},
			{SPIFFEID: sid("spiffe://prod.example.com/billing/v2"), Selectors: []string{"unix:uid:1000", "unix:path:/usr/bin/billing",
				"unix:sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, Line: 26},
			{SPIFFEID: sid("spiffe://prod.example.com/batch"), Selectors: []string{"systemd:id:batch.service", "unix:supplementary_gid:27",
				"k8s:pod-uid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "container:id:abc123"}, Line: 28},
		},
		Routes: []Route{
			{Name: "echo", Host: "echo.test", Upstream: "127.0.0.1:8443", ServerID: sid("spiffe://upstream.test/echo"),
				Protocol: "http1", SocketMode: 0o600, Line: 31},
			{Name: "pg", Host: "pg.partner.example", Upstream: "[::1]:5432", ServerTrustDomain: td("partner.example"),
				Protocol: "tcp", Socket: "/run/pm/pg.sock", SocketMode: 0o640, Line: 36},
			{Name: "raw", Host: "raw.test", Upstream: "raw.upstream.test:9000", ServerID: sid("spiffe://upstream.test/raw"),
				ServerTrustDomain: td("upstream.test"), Protocol: "tcp", ALPN: []string{"h2", "grpc-exp"}, Socket: "/run/pm/raw.sock", SocketMode: 0o600, Line: 43},
			{Name: "api", Host: "api.test", Upstream: "10.0.0.1:443", ServerTrustDomain: td("upstream.test"), Protocol: "http2", SocketMode: 0o600, Line: 51},
			{Name: "web", Host: "web.test", Upstream: "10.0.0.2:443", ServerTrustDomain: td("upstream.test"), Protocol: "http3", SocketMode: 0o600, Line: 52},
			{Name: "any", Host: "any.test", Upstream: "10.0.0.3:443", ServerTrustDomain: td("upstream.test"), Protocol: "auto", SocketMode: 0o600, Line: 53},
		},
		Policy: Policy{Default: "allow", Rules: []Rule{
			{Name: "billing-echo", From: []Caller{{ID: sid("spiffe://prod.example.com/billing")}, {ID: sid("spiffe://prod.example.com/billing/v2")}},
				To: []string{"echo"}, Mode: "enforce", Line: 57},
			{Name: "rule[1]", From: []Caller{{ID: sid("spiffe://prod.example.com/batch")}}, To: []string{"pg", "raw"}, Mode: "enforce", Line: 60},
			{Name: "team-read", From: []Caller{{ID: sid("spiffe://prod.example.com/team-a"), Prefix: true}, {ID: td("prod.example.com").ID(), Prefix: true}},
				Selectors: []string{"unix:uid:1000", "unix:gid:100"}, To: []string{"api", "web"},
				Methods: []string{"GET", "HEAD", "PROPFIND"}, Paths: []string{"/public/*", "/health", "/a%20b/*"},
				Headers: map[string]string{"X-Env": "prod", "X-Request-Class": "batch job"}, Mode: "enforce", Line: 62},
		}},
		Limits: Limits{
			MaxRequestHeaderBytes: 32 << 10, MaxRequestHeaders: 50, MaxResponseHeaderBytes: 131072, MaxResponseHeaders: 80,
			HeaderReadTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, RequestTimeout: 30 * time.Second,
			StreamIdleTimeout: time.Minute, MaxConcurrentStreams: 250, MaxConnections: 2000, MaxConnectionsPerIdentity: 200,
			MaxRequestBodyBytes: 10 << 20, Line: 73, MaxUnattestedConnectionsPerUID: 16,
		},
		Upstream: Upstream{
			ConnectTimeout: 2500 * time.Millisecond, IdleTimeout: time.Minute, MaxIdlePerPool: 8,
			ResponseHeaderTimeout: 20 * time.Second, HTTP2ReadIdleTimeout: 45 * time.Second, CopyBufferSize: 64 << 10, TLSRecordSizing: "max",
			RequestHeadersToRemove: []string{"X-Forwarded-Client-Cert", "X-Caller-Id"},
			QUIC: QUIC{MaxIncomingStreams: 500, IdleTimeout: time.Minute, KeepAlivePeriod: 20 * time.Second,
				MaxStreamReceiveWindow: 1 << 20, MaxConnectionReceiveWindow: 4 << 20, Line: 96},
		},
		Reload:   Reload{Watch: false, Debounce: 2 * time.Second},
		Shutdown: Shutdown{DrainTimeout: 5 * time.Minute},
		Runtime:  Runtime{MaxProcs: 2, GCPercent: 400, MemoryLimit: 256 << 20},
		Log:      Log{Level: zerolog.DebugLevel, File: "/var/log/procmesh.json", FlushInterval: 0},
		Admin:    Admin{Listen: "127.0.0.1:9902", Pprof: true, MaxIdentityLabels: 50, Line: 122},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Load(full.yaml)\n got %+v\nwant %+v", c, want)
	}
	if !c.Policy.DefaultAllow() {
		t.Error("DefaultAllow() = false for default: allow")
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate on a loaded config: %v", err)
	}
}

// TestDefaults: a file with only trust_domain gets every documented default.
func TestDefaults(t *testing.T) {
	c, err := Parse("min.yaml", []byte("trust_domain: example.org\nlisten: {socket: \"\", mode: \"\", group: \"\"}\nidentity:\n  ca:\nroutes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: spiffe://example.org/e}\npolicy:\n  rules:\n    - {from: [spiffe://example.org/a], to: [e]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:        "min.yaml",
		TrustDomain: td("example.org"),
		Listen:      Listen{Socket: "/run/procmesh/egress.sock", Mode: 0o660},
		Identity: Identity{Provider: "builtin", SPIRE: SPIRE{AdminSocket: "/run/spire/admin.sock", FirstAnswerTimeout: 5 * time.Second}, StateDir: "/var/lib/procmesh", SVIDTTL: time.Hour,
			JWTSVIDTTL: DefaultJWTSVIDTTL, JWTKeyRotation: DefaultJWTKeyRotation},
		Cache:  Cache{MaxProcesses: 10000, TTL: 5 * time.Minute},
		Attest: Attest{ConnectRecord: "auto", ForeignWriter: "refuse", HashSizeLimit: 128 << 20, MaxConcurrentHashes: 2, RatePerUID: 100, BurstPerUID: 1000},
		Routes: []Route{{Name: "e", Host: "e.test", Upstream: "h:1", ServerID: sid("spiffe://example.org/e"),
			Protocol: "http1", SocketMode: 0o660, Line: 6}},
		Policy: Policy{Default: "deny", Rules: []Rule{{Name: "rule[0]", From: []Caller{{ID: sid("spiffe://example.org/a")}}, To: []string{"e"}, Mode: "enforce", Line: 9}}},
		Limits: Limits{
			MaxRequestHeaderBytes: 61440, MaxRequestHeaders: 100, MaxResponseHeaderBytes: 61440, MaxResponseHeaders: 100,
			HeaderReadTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, RequestTimeout: 0,
			StreamIdleTimeout: 5 * time.Minute, MaxConcurrentStreams: 100, MaxConnections: 10000, MaxConnectionsPerIdentity: 1000,
			MaxRequestBodyBytes: 0, MaxUnattestedConnectionsPerUID: 64,
		},
		Upstream: Upstream{
			ConnectTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second, MaxIdlePerPool: 64,
			ResponseHeaderTimeout: 0, HTTP2ReadIdleTimeout: 30 * time.Second, CopyBufferSize: 32 << 10, TLSRecordSizing: "dynamic",
			RequestHeadersToRemove: []string{"X-Forwarded-Client-Cert", "X-Spiffe-Id", "X-Client-Spiffe-Id", "X-Real-Ip"},
			QUIC: QUIC{MaxIncomingStreams: 100, IdleTimeout: 30 * time.Second, KeepAlivePeriod: 15 * time.Second,
				MaxStreamReceiveWindow: 6 << 20, MaxConnectionReceiveWindow: 15 << 20},
		},
		Reload:   Reload{Watch: true, Debounce: 500 * time.Millisecond},
		Shutdown: Shutdown{DrainTimeout: 30 * time.Second},
		Runtime:  Runtime{GCPercent: 100},
		Log:      Log{Level: zerolog.InfoLevel, FlushInterval: 100 * time.Millisecond},
		Admin:    Admin{MaxIdentityLabels: DefaultMaxIdentityLabels},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults\n got %+v\nwant %+v", c, want)
	}
	if c.Policy.DefaultAllow() {
		t.Error("DefaultAllow() = true by default")
	}
}

// TestExampleLoads: configs/example.yaml is valid and shows every key of the
// schema, so that it documents them all.
func TestExampleLoads(t *testing.T) {
	const path = "../configs/example.yaml"
	c, err := Load(path)
	if err != nil {
		t.Fatalf("example does not load:\n%v", err)
	}
	if len(c.Workloads) == 0 || len(c.Routes) == 0 || len(c.Policy.Rules) == 0 || len(c.TrustBundles) == 0 {
		t.Fatalf("example leaves a list empty: %+v", c)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, section := range sections() {
		n := lookup(doc.Content[0], section)
		if n == nil {
			t.Errorf("example has no section %q", section)
			continue
		}
		for _, k := range keys(section) {
			if lookup(n, k) == nil {
				t.Errorf("example does not show key %q in section %q", k, section)
			}
		}
	}
}

// lookup follows a dotted section path ("policy.rules[]": first item) from n.
func lookup(n *yaml.Node, path string) *yaml.Node {
	if path == "" {
		return n
	}
	for _, part := range strings.Split(path, ".") {
		name, item := strings.CutSuffix(part, "[]")
		var next *yaml.Node
		for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		if item {
			if next.Kind != yaml.SequenceNode || len(next.Content) == 0 {
				return nil
			}
			next = next.Content[0]
		}
		n = next
	}
	return n
}

// TestLoadIOErrors: a missing file is a wrapped fs error; a huge file is refused.
func TestLoadIOErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Fatalf("Load(missing) = %v; want config: open ...: %v", err, fs.ErrNotExist)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("trust_domain: example.org\n"+strings.Repeat("#", MaxFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(big)
	if want := big + ": file is larger than 4194304 bytes"; err == nil || err.Error() != want {
		t.Fatalf("Load(big) = %v; want %s", err, want)
	}
}

// TestThreat_F5_LoadInvalidFileNamesFileLine: Load of an invalid file returns
// no config and an error whose every line starts with PATH:LINE, so a reload
// can keep the last good config and log where the new one is wrong.
func TestThreat_F5_LoadInvalidFileNamesFileLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "procmesh.yaml")
	src := "trust_domain: example.org\nlisten:\n  mode: \"0444\"\nroutes:\n  - {name: e, host: e.test, upstream: nohost}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if c != nil || err == nil {
		t.Fatalf("Load(invalid) = %v, %v; want nil config and an error", c, err)
	}
	want := []string{path + ":3: listen.mode: ", path + ":5: routes[0].upstream: "}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d error lines, want %d:\n%v", len(lines), len(want), err)
	}
	for i, prefix := range want {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q; want prefix %q", i, lines[i], prefix)
		}
	}
}

// TestValidateBuiltInCode: Validate works on a Config built without Parse
// (no file, no lines) and reports relations only.
func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{
		Identity:  Identity{CA: CAFiles{Key: "/k"}},
		Workloads: []Workload{{SPIFFEID: sid("spiffe://example.org/a"), Selectors: []string{"unix:uid:1"}}},
	}
	want := `missing required key "trust_domain"` + "\n" +
		"identity.ca: set both cert and key (operator CA) or neither (CA generated under state_dir)"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate\n got %v\nwant %s", err, want)
	}
	c.TrustDomain, c.Identity.CA = td("example.org"), CAFiles{}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	entries := c.RegistryEntries()
	if len(entries) != 1 || entries[0].ID != c.Workloads[0].SPIFFEID || entries[0].Index != 0 {
		t.Fatalf("RegistryEntries() = %+v", entries)
	}
}
