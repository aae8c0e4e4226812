package peers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/registry"
)

func testInputs() Inputs {
	return Inputs{
		Dir: "/run/bench",
		Client: pki.Files{ID: "spiffe://bench.test/haproxy", Cert: "/c/haproxy.pem", Key: "/c/haproxy.key",
			CertKey: "/c/haproxy.crt+key.pem", Bundle: "/c/ca.pem"},
		Upstream: Upstream{H1: "127.0.0.1:1001", H2: "127.0.0.1:1002", H3: "127.0.0.1:1003", L4: "127.0.0.1:1004",
			ServerName: "upstream.bench.test", ServerID: "spiffe://bench.test/upstream"},
		GID: 4242, MaxConns: 10500, FDLimit: 20000,
	}
}

// mustContain fails for every fairness setting missing from cfg.
func mustContain(t *testing.T, what, cfg string, settings ...string) {
	t.Helper()
	for _, s := range settings {
		if !strings.Contains(cfg, s) {
			t.Errorf("%s lacks %q", what, s)
		}
	}
}

func TestHAProxyFairness(t *testing.T) {
	cfg, sslConf, s := HAProxy(testInputs())
	mustContain(t, "haproxy.cfg", cfg,
		"nbthread 2",
		"ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256",
		"ssl-default-server-options ssl-min-ver TLSv1.3",
		"http-reuse safe",
		"bind unix@/run/bench/hap-h1.sock mode 660 gid 4242",
		"server up 127.0.0.1:1001 ssl verify required ca-file /c/ca.pem crt /c/haproxy.crt+key.pem sni str(upstream.bench.test) alpn h2,http/1.1",
		"server up 127.0.0.1:1002 ssl verify required",
		"maxconn 10500",
	)
	// The L4 backend speaks TCP and offers no ALPN.
	l4 := cfg[strings.Index(cfg, "backend be_l4"):]
	mustContain(t, "be_l4", l4, "mode tcp", "server up 127.0.0.1:1004 ssl verify required")
	if strings.Contains(l4, "alpn") {
		t.Error("the L4 backend offers ALPN")
	}
	if strings.Contains(cfg, "\n    log ") || strings.Contains(cfg, "option httplog") {
		t.Error("HAProxy logs requests; the suite runs it without access logs")
	}
	mustContain(t, "OPENSSL_CONF", sslConf, "Groups = X25519", "Ciphersuites = TLS_AES_128_GCM_SHA256", "MinProtocol = TLSv1.3")
	if s.HTTP == "" || s.H2 == "" || s.L4 == "" || s.H3 != "" {
		t.Errorf("HAProxy sockets = %+v, want HTTP, H2 and L4 but no H3", s)
	}
}

func TestNginxFairness(t *testing.T) {
	cfg, s := Nginx(testInputs())
	mustContain(t, "nginx.conf", cfg,
		"load_module /usr/lib/nginx/modules/ngx_stream_module.so;",
		"worker_processes 2;",
		"listen unix:/run/bench/ng-h1.sock;",
		"listen unix:/run/bench/ng-l4.sock;",
		"proxy_pass https://up_h1;",
		"keepalive 64;",
		"proxy_http_version 1.1;",
		`proxy_set_header Connection "";`,
		"proxy_ssl_certificate /c/haproxy.pem;",
		"proxy_ssl_certificate_key /c/haproxy.key;",
		"proxy_ssl_trusted_certificate /c/ca.pem;",
		"proxy_ssl_verify on;",
		"proxy_ssl_name upstream.bench.test;",
		"proxy_ssl_server_name on;",
		"proxy_ssl_session_reuse on;",
		"proxy_ssl_protocols TLSv1.3;",
		"proxy_ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;",
		"proxy_ssl_conf_command Groups X25519;",
		"proxy_ssl on;",
		"keepalive_requests 1000000;",
		"access_log off;",
		"worker_rlimit_nofile 20000;",
	)
	// Both the HTTP and the stream server pin TLS the same way.
	if n := strings.Count(cfg, "proxy_ssl_conf_command Groups X25519;"); n != 2 {
		t.Errorf("Groups X25519 set %d times, want 2 (http and stream)", n)
	}
	if s.H2 != "" || s.H3 != "" {
		t.Errorf("nginx sockets = %+v; nginx cannot speak HTTP/2 or HTTP/3 upstream", s)
	}
}

// TestEnvoyConfigStructure checks that the generated bootstrap says what
// the fairness settings need (TestEnvoyValidate has Envoy accept it): three
// Unix (pipe) listeners, clusters with an UpstreamTlsContext carrying a
// static client certificate, TLS 1.3, X25519, SNI and the upstream's SPIFFE
// ID.
func TestEnvoyConfigStructure(t *testing.T) {
	cfg, s := Envoy(testInputs())
	var doc struct {
		StaticResources struct {
			Listeners []struct {
				Name    string
				Address struct {
					Pipe struct {
						Path string
						Mode int
					}
					SocketAddress any `yaml:"socket_address"`
				}
				FilterChains []struct {
					Filters []struct {
						Name        string
						TypedConfig map[string]any `yaml:"typed_config"`
					}
				} `yaml:"filter_chains"`
			}
			Clusters []struct {
				Name            string
				Type            string
				ConnectTimeout  string         `yaml:"connect_timeout"`
				CircuitBreakers map[string]any `yaml:"circuit_breakers"`
				LoadAssignment  map[string]any `yaml:"load_assignment"`
				TransportSocket struct {
					Name        string
					TypedConfig struct {
						Type             string `yaml:"@type"`
						SNI              string
						CommonTLSContext struct {
							TLSParams struct {
								Min    string   `yaml:"tls_minimum_protocol_version"`
								Max    string   `yaml:"tls_maximum_protocol_version"`
								Curves []string `yaml:"ecdh_curves"`
							} `yaml:"tls_params"`
							Certs []struct {
								Chain map[string]string `yaml:"certificate_chain"`
								Key   map[string]string `yaml:"private_key"`
							} `yaml:"tls_certificates"`
							Validation struct {
								TrustedCA map[string]string `yaml:"trusted_ca"`
								SANs      []struct {
									SANType string            `yaml:"san_type"`
									Matcher map[string]string `yaml:"matcher"`
								} `yaml:"match_typed_subject_alt_names"`
							} `yaml:"validation_context"`
							ALPN []string `yaml:"alpn_protocols"`
						} `yaml:"common_tls_context"`
					} `yaml:"typed_config"`
				} `yaml:"transport_socket"`
				ProtocolOptions map[string]map[string]any `yaml:"typed_extension_protocol_options"`
			}
		} `yaml:"static_resources"`
	}
	dec := yaml.NewDecoder(strings.NewReader(cfg))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("generated Envoy config does not decode into the v3 bootstrap shape: %v", err)
	}
	ls := doc.StaticResources.Listeners
	if len(ls) != 3 {
		t.Fatalf("%d listeners, want 3 (h1, h2, l4)", len(ls))
	}
	wantPaths := map[string]string{"h1": s.HTTP, "h2": s.H2, "l4": s.L4}
	for _, l := range ls {
		if l.Address.Pipe.Path != wantPaths[l.Name] || l.Address.SocketAddress != nil {
			t.Errorf("listener %s listens on %+v, want only the Unix socket %s", l.Name, l.Address, wantPaths[l.Name])
		}
		if l.Address.Pipe.Mode != 0o660 {
			t.Errorf("listener %s socket mode %o, want 660", l.Name, l.Address.Pipe.Mode)
		}
		filter := l.FilterChains[0].Filters[0]
		want := "envoy.filters.network.http_connection_manager"
		if l.Name == "l4" {
			want = "envoy.filters.network.tcp_proxy"
		}
		if filter.Name != want || filter.TypedConfig["@type"] == nil {
			t.Errorf("listener %s filter %s, want %s with a typed_config", l.Name, filter.Name, want)
		}
	}
	cs := doc.StaticResources.Clusters
	if len(cs) != 3 {
		t.Fatalf("%d clusters, want 3", len(cs))
	}
	for _, c := range cs {
		ts := c.TransportSocket.TypedConfig
		ctx := ts.CommonTLSContext
		switch {
		case c.TransportSocket.Name != "envoy.transport_sockets.tls" || !strings.HasSuffix(ts.Type, "tls.v3.UpstreamTlsContext"):
			t.Errorf("cluster %s: transport socket %q %q, want an UpstreamTlsContext", c.Name, c.TransportSocket.Name, ts.Type)
		case ts.SNI != "upstream.bench.test":
			t.Errorf("cluster %s: SNI %q", c.Name, ts.SNI)
		case ctx.TLSParams.Min != "TLSv1_3" || ctx.TLSParams.Max != "TLSv1_3":
			t.Errorf("cluster %s: TLS %s..%s, want 1.3 only", c.Name, ctx.TLSParams.Min, ctx.TLSParams.Max)
		case len(ctx.TLSParams.Curves) != 1 || ctx.TLSParams.Curves[0] != "X25519":
			t.Errorf("cluster %s: curves %v, want [X25519]", c.Name, ctx.TLSParams.Curves)
		case len(ctx.Certs) != 1 || ctx.Certs[0].Chain["filename"] != "/c/haproxy.pem" || ctx.Certs[0].Key["filename"] != "/c/haproxy.key":
			t.Errorf("cluster %s: client certificate %+v", c.Name, ctx.Certs)
		case ctx.Validation.TrustedCA["filename"] != "/c/ca.pem":
			t.Errorf("cluster %s: trusted CA %v", c.Name, ctx.Validation.TrustedCA)
		case len(ctx.Validation.SANs) != 1 || ctx.Validation.SANs[0].SANType != "URI" || ctx.Validation.SANs[0].Matcher["exact"] != "spiffe://bench.test/upstream":
			t.Errorf("cluster %s: SAN match %+v, want the upstream's SPIFFE ID", c.Name, ctx.Validation.SANs)
		}
	}
	h2 := cs[1]
	opts := h2.ProtocolOptions["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	explicit, _ := opts["explicit_http_config"].(map[string]any)
	if _, ok := explicit["http2_protocol_options"]; !ok || h2.TransportSocket.TypedConfig.CommonTLSContext.ALPN[0] != "h2" {
		t.Errorf("cluster up_h2 does not speak HTTP/2: %+v", opts)
	}
}

func TestProcmeshConfig(t *testing.T) {
	p := Procmesh{
		Inputs:          testInputs(),
		StateDir:        "/run/bench/state/ca",
		Clients:         map[string]string{"loadgen": "/run/bench/bin/procmesh-bench", "h2load": "/usr/bin/h2load"},
		ColdUIDs:        []int{200000, 200001},
		H2:              true,
		MaxConnections:  12000,
		AttestUnlimited: true,
	}
	cfg := p.Config()
	mustContain(t, "procmesh.yaml", cfg,
		"GOMAXPROCS=2",
		"socket: /run/bench/pm.sock",
		`group: "4242"`,
		"state_dir: /run/bench/state/ca",
		`selectors: ["unix:path:/usr/bin/h2load", "unix:uid:0"]`,
		`selectors: ["unix:uid:200001"]`,
		"protocol: tcp\n    socket: /run/bench/pm-l4.sock",
		"protocol: http2",
		"server_id: spiffe://bench.test/upstream",
		"max_connections: 12000\n  max_connections_per_identity: 12000",
		"attest: {rate_per_uid: 1000000, burst_per_uid: 1000000}",
	)
	if strings.Contains(cfg, "http3") {
		t.Error("an http3 route was written though H3 is off")
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(cfg), &doc); err != nil {
		t.Fatalf("procmesh config is not YAML: %v", err)
	}
	s := p.Sockets()
	if s.HTTP != s.H2 || s.H3 != "" {
		t.Errorf("procmesh sockets = %+v: HTTP/2 routes share the main socket, no HTTP/3", s)
	}
}

// TestProcmeshConfigLoads runs the generated configuration through
// procmesh's own loader and registration-entry checks (what `procmesh
// check` does): no unknown key, no ambiguous entries.
func TestProcmeshConfigLoads(t *testing.T) {
	dir := t.TempDir()
	in := testInputs()
	in.Dir = dir
	p := Procmesh{Inputs: in, StateDir: filepath.Join(dir, "state"),
		Clients:  map[string]string{"loadgen": "/usr/bin/true", "manyprocs": "/usr/bin/false"},
		ColdUIDs: []int{200000, 200001, 200002}, AttestUnlimited: true}
	file := filepath.Join(dir, "procmesh.yaml")
	if err := os.WriteFile(file, []byte(p.Config()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("procmesh rejects the generated config: %v", err)
	}
	if _, err := registry.New(cfg.RegistryEntries()); err != nil {
		t.Fatalf("procmesh rejects the generated entries: %v", err)
	}
	if len(cfg.Workloads) != 5 || len(cfg.Routes) != 2 || cfg.Listen.Socket != filepath.Join(dir, "pm.sock") {
		t.Errorf("loaded %d workloads, %d routes, socket %s; want 5, 2, %s", len(cfg.Workloads), len(cfg.Routes), cfg.Listen.Socket, filepath.Join(dir, "pm.sock"))
	}
}

func TestEnvoyVersion(t *testing.T) {
	for out, want := range map[string]string{
		"\nenvoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n\n": "1.40.0",
		"something else": "something else",
	} {
		if got := EnvoyVersion(out); got != want {
			t.Errorf("EnvoyVersion(%q) = %q, want %q", out, got, want)
		}
	}
}

// TestProcmeshVariantConfigLoads checks that the protection-cost variants'
// configurations load through procmesh's loader with the attest setting
// they change (beside the unlimited attestation rate) and sockets of their
// own.
func TestProcmeshVariantConfigLoads(t *testing.T) {
	for _, c := range []struct {
		tag, setting           string
		wantRecord, wantWriter string
	}{
		{"norecord", "connect_record: off", "off", "refuse"},
		{"fwattest", "foreign_writer: attest", "auto", "attest"},
	} {
		dir := t.TempDir()
		in := testInputs()
		in.Dir = dir
		p := Procmesh{Inputs: in, StateDir: filepath.Join(dir, "state"), Clients: map[string]string{"loadgen": "/usr/bin/true"},
			AttestUnlimited: true, Tag: c.tag, Attest: []string{c.setting}}
		file := filepath.Join(dir, "procmesh.yaml")
		if err := os.WriteFile(file, []byte(p.Config()), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatalf("%s: procmesh rejects the generated config: %v", c.tag, err)
		}
		if cfg.Attest.ConnectRecord != c.wantRecord || cfg.Attest.ForeignWriter != c.wantWriter || cfg.Attest.RatePerUID != 1000000 {
			t.Errorf("%s: attest = %+v, want connect_record %s, foreign_writer %s, rate_per_uid 1000000", c.tag, cfg.Attest, c.wantRecord, c.wantWriter)
		}
		if want := filepath.Join(dir, "pm-"+c.tag+".sock"); cfg.Listen.Socket != want || p.Sockets().L4 != filepath.Join(dir, "pm-"+c.tag+"-l4.sock") {
			t.Errorf("%s: sockets %s, %+v; want %s and its own L4 socket", c.tag, cfg.Listen.Socket, p.Sockets(), want)
		}
	}
}
