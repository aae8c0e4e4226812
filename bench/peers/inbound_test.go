package peers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procmesh/procmesh/bench/pki"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/registry"
)

func testInbound() Inbound {
	return Inbound{Dir: "/run/bench", Listen: "127.0.0.1:9443",
		Server: pki.Files{ID: "spiffe://bench.test/haproxy-inbound", Cert: "/c/srv.pem", Key: "/c/srv.key",
			CertKey: "/c/srv.crt+key.pem", Bundle: "/c/ca.pem"},
		App: "/run/bench/app.sock", ClientID: "spiffe://bench.test/inbound-client", MaxConns: 10500, FDLimit: 20000}
}

// TestInboundFairness checks every setting the inbound terminators must
// share: mTLS required against the bundle, TLS 1.3, one cipher and curve,
// no session tickets, pooled keep-alive connections to the app's socket,
// two workers, no access logs.
func TestInboundFairness(t *testing.T) {
	in := testInbound()
	hap := HAProxyInbound(in)
	mustContain(t, "haproxy-inbound.cfg", hap,
		"nbthread 2",
		"maxconn 10500",
		"http-reuse safe",
		"option http-keep-alive",
		"bind 127.0.0.1:9443 ssl crt /c/srv.crt+key.pem ca-file /c/ca.pem verify required ssl-min-ver TLSv1.3 ciphersuites TLS_AES_128_GCM_SHA256 no-tls-tickets alpn http/1.1",
		"server app unix@/run/bench/app.sock",
	)
	if strings.Contains(hap, "\n    log ") || strings.Contains(hap, "option httplog") {
		t.Error("HAProxy logs requests; the suite runs it without access logs")
	}
	ngx := NginxInbound(in)
	mustContain(t, "nginx-inbound.conf", ngx,
		"worker_processes 2;",
		"access_log off;",
		"keepalive_requests 1000000;",
		"server unix:/run/bench/app.sock;",
		"keepalive 64;",
		"listen 127.0.0.1:9443 ssl;",
		"ssl_certificate /c/srv.pem;",
		"ssl_certificate_key /c/srv.key;",
		"ssl_client_certificate /c/ca.pem;",
		"ssl_verify_client on;",
		"ssl_protocols TLSv1.3;",
		"ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;",
		"ssl_ecdh_curve X25519;",
		"ssl_session_tickets off;",
		"proxy_pass http://app;",
		"proxy_http_version 1.1;",
		`proxy_set_header Connection "";`,
	)
	if strings.Contains(ngx, "load_module") {
		t.Error("the inbound nginx loads a module it does not use")
	}
	cad := CaddyInbound(in)
	mustContain(t, "Caddyfile-inbound", cad,
		"admin off",
		"https://inbound.bench.test:9443 {",
		"bind 127.0.0.1",
		"tls /c/srv.pem /c/srv.key {",
		"protocols tls1.3",
		"curves x25519",
		"mode require_and_verify",
		"trusted_ca_cert_file /c/ca.pem",
		"reverse_proxy unix//run/bench/app.sock {",
		"keepalive_idle_conns_per_host 64",
	)
}

// TestProcmeshInboundConfigLoads runs the inbound procmesh's configuration
// through procmesh's loader: the listener, its policy, and the app's
// program registered as the identity the listener presents. Without that
// entry the loader refuses the file, so the entry is what makes the
// serving process attestable.
func TestProcmeshInboundConfigLoads(t *testing.T) {
	dir := t.TempDir()
	in := testInbound()
	in.Dir = dir
	gen := ProcmeshInbound(in, filepath.Join(dir, "state"), "/usr/local/bin/procmesh-bench-app", filepath.Join(dir, "pm.log"))
	file := filepath.Join(dir, "procmesh-inbound.yaml")
	if err := os.WriteFile(file, []byte(gen), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("procmesh rejects the generated config: %v", err)
	}
	if _, err := registry.New(cfg.RegistryEntries()); err != nil {
		t.Fatalf("procmesh rejects the generated entries: %v", err)
	}
	if len(cfg.Inbound) != 1 {
		t.Fatalf("loaded %d inbound listeners, want 1", len(cfg.Inbound))
	}
	mustContain(t, "procmesh-inbound.yaml", gen,
		"listen: 127.0.0.1:9443",
		"service: /run/bench/app.sock",
		"protocol: http1",
		"identity: "+AppID,
		"pass_identity: xfcc",
		"default: deny",
		`from: ["spiffe://bench.test/inbound-client"]`,
		`selectors: ["unix:path:/usr/local/bin/procmesh-bench-app", "unix:uid:0"]`,
	)
	in.Callers = []string{"spiffe://bench.test/loadgen"}
	if with := ProcmeshInbound(in, filepath.Join(dir, "state"), "/x", "/y"); !strings.Contains(with, `from: ["spiffe://bench.test/inbound-client", "spiffe://bench.test/loadgen"]`) {
		t.Errorf("the inbound policy does not allow the end-to-end caller:\n%s", with)
	}
	if len(cfg.Workloads) != 1 || cfg.Workloads[0].SPIFFEID.String() != AppID {
		t.Errorf("workloads = %+v, want the app's entry only", cfg.Workloads)
	}

	// The same file without the app's entry is refused.
	bare := strings.Replace(gen, "  - spiffe_id: "+AppID+"\n", "  - spiffe_id: spiffe://bench.test/other\n", 1)
	if err := os.WriteFile(file, []byte(bare), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(file); err == nil {
		t.Error("procmesh accepts an inbound identity no workloads entry gives; the app's entry would not be needed")
	}
}

// inboundFiles writes real certificates for the validators.
func inboundFiles(t *testing.T) Inbound {
	t.Helper()
	dir := t.TempDir()
	p, err := pki.New(filepath.Join(dir, "state"), filepath.Join(dir, "certs"), -1)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := p.Server("inbound", "spiffe://bench.test/inbound", pki.InboundHost)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"nginx-inbound-client-body", "nginx-inbound-proxy-temp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	return Inbound{Dir: dir, Listen: "127.0.0.1:1", Server: srv, App: filepath.Join(dir, "app.sock"),
		ClientID: "spiffe://bench.test/inbound-client", MaxConns: 1000, FDLimit: 8192}
}

// TestHAProxyInboundValidate has HAProxy check the generated file with
// real certificate files (`haproxy -c`, what the suite runs first), and
// refuse it when the CA file is missing. make test installs HAProxy; the
// test fails without it.
func TestHAProxyInboundValidate(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("HAProxy validates the inbound configuration: ./bench/install.sh haproxy installs it (make test does): %v", err)
	}
	in := inboundFiles(t)
	check := func(cfg string) (string, bool) {
		file := filepath.Join(in.Dir, "haproxy-inbound.cfg")
		conf := filepath.Join(in.Dir, "openssl.cnf")
		os.WriteFile(file, []byte(cfg), 0o644)
		os.WriteFile(conf, []byte(OpenSSLConf), 0o644)
		cmd := exec.Command(bin, "-c", "-q", "-f", file)
		cmd.Env = append(os.Environ(), "OPENSSL_CONF="+conf)
		out, err := cmd.CombinedOutput()
		return string(out), err == nil
	}
	if out, ok := check(HAProxyInbound(in)); !ok {
		t.Fatalf("haproxy -c refuses the generated inbound configuration:\n%s", out)
	}
	bad := in
	bad.Server.Bundle = filepath.Join(in.Dir, "missing-ca.pem")
	if _, ok := check(HAProxyInbound(bad)); ok {
		t.Error("haproxy -c accepts a missing CA file: the check cannot fail")
	}
}

// TestNginxInboundValidate has nginx check the generated file (`nginx -t`)
// with real certificate files, and refuse it when the client CA file is
// missing. make test installs nginx (test-tools); without it the test
// fails and says so.
func TestNginxInboundValidate(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatalf("nginx is not installed (make test-tools, or ./bench/install.sh nginx, installs it): %v", err)
	}
	in := inboundFiles(t)
	check := func(cfg string) (string, bool) {
		file := filepath.Join(in.Dir, "nginx-inbound.conf")
		os.WriteFile(file, []byte(cfg), 0o644)
		out, err := exec.Command(bin, "-t", "-q", "-c", file, "-p", in.Dir+"/", "-e", filepath.Join(in.Dir, "error.log")).CombinedOutput()
		return string(out), err == nil
	}
	if out, ok := check(NginxInbound(in)); !ok {
		t.Fatalf("nginx -t refuses the generated inbound configuration:\n%s", out)
	}
	bad := in
	bad.Server.Bundle = filepath.Join(in.Dir, "missing-ca.pem")
	if _, ok := check(NginxInbound(bad)); ok {
		t.Error("nginx -t accepts a missing client CA file: the check cannot fail")
	}
}

// TestCaddyInboundValidate has Caddy validate the generated Caddyfile with
// real certificate files, and refuse it when the trusted CA file is
// missing. make test installs Caddy; the test fails without it.
func TestCaddyInboundValidate(t *testing.T) {
	bin := caddyBinary(t)
	in := inboundFiles(t)
	if out, ok := caddyValidate(t, bin, in.Dir, CaddyInbound(in)); !ok {
		t.Fatalf("caddy validate refuses the generated inbound Caddyfile:\n%s", out)
	}
	bad := in
	bad.Server.Bundle = filepath.Join(in.Dir, "missing-ca.pem")
	if _, ok := caddyValidate(t, bin, in.Dir, CaddyInbound(bad)); ok {
		t.Error("caddy validate accepts a missing trusted CA file: the check cannot fail")
	}
}

// TestE2EEgressConfigs checks the end-to-end path's egress halves:
// HAProxy's (validated by haproxy -c with real certificates, verifying the
// inbound HAProxy by the name its certificate carries) and procmesh's
// (through procmesh's loader: one route to the inbound listener whose
// server_id is the app's ID, the caller registered).
func TestE2EEgressConfigs(t *testing.T) {
	in := inboundFiles(t)
	p, err := pki.New(filepath.Join(in.Dir, "state"), filepath.Join(in.Dir, "certs"), -1)
	if err != nil {
		t.Fatal(err)
	}
	client, err := p.Client("haproxy-egress")
	if err != nil {
		t.Fatal(err)
	}
	e2e := E2E{Dir: in.Dir, Socket: filepath.Join(in.Dir, "hap-e2e.sock"), Inbound: "127.0.0.1:9443", ServerID: AppID, Client: client, GID: 4242}
	hap := HAProxyEgress(e2e)
	mustContain(t, "haproxy-egress.cfg", hap,
		"nbthread 2",
		"http-reuse safe",
		"ssl-default-server-ciphersuites TLS_AES_128_GCM_SHA256",
		"ssl-default-server-options ssl-min-ver TLSv1.3",
		"bind unix@"+e2e.Socket+" mode 660 gid 4242",
		"server inbound 127.0.0.1:9443 ssl verify required ca-file "+client.Bundle+" crt "+client.CertKey+" sni str(inbound.bench.test) alpn http/1.1",
	)
	if bin, err := exec.LookPath("haproxy"); err != nil {
		t.Errorf("HAProxy validates the end-to-end configuration: ./bench/install.sh haproxy installs it (make test does): %v", err)
	} else {
		file := filepath.Join(in.Dir, "haproxy-egress.cfg")
		os.WriteFile(file, []byte(hap), 0o644)
		if out, err := exec.Command(bin, "-c", "-q", "-f", file).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c refuses the generated egress half: %v\n%s", err, out)
		}
	}

	e2e.Socket = filepath.Join(in.Dir, "pm-e2e.sock")
	gen := ProcmeshEgress(e2e, filepath.Join(in.Dir, "state"), "/usr/local/bin/procmesh-bench", filepath.Join(in.Dir, "pm.log"), []string{"X25519"})
	file := filepath.Join(in.Dir, "procmesh-egress.yaml")
	if err := os.WriteFile(file, []byte(gen), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("procmesh rejects the generated egress half: %v", err)
	}
	if _, err := registry.New(cfg.RegistryEntries()); err != nil {
		t.Fatalf("procmesh rejects the generated entries: %v", err)
	}
	if len(cfg.Routes) != 1 || cfg.Routes[0].Upstream != "127.0.0.1:9443" || cfg.Routes[0].Host != HostE2E {
		t.Errorf("routes = %+v, want one to the inbound listener for %s", cfg.Routes, HostE2E)
	}
	mustContain(t, "procmesh-egress.yaml", gen, "server_id: "+AppID, "tls_curves: [X25519]", "to: [inbound]")
}
