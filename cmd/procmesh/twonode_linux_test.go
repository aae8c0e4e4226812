package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/procmesh/procmesh/internal/logtest"
)

// The two-node test's programs are this test binary, copied under other
// names and re-executed with envTwoNode set to a mode.
const envTwoNode = "PROCMESH_TWONODE_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envTwoNode); mode != "" {
		os.Exit(runTwoNodeHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runTwoNodeHelper: "app SOCK" serves HTTP/1.1 and h2c on SOCK answering
// the X-Forwarded-Client-Cert it got; "grpc SOCK" serves gRPC, putting it
// in the trailer x-xfcc; "get SOCK HOST" calls http://HOST/ through the
// egress socket SOCK and prints status and body; "rpc SOCK HOST" calls
// UnaryCall through it and prints the trailer.
func runTwoNodeHelper(mode string, args []string) int {
	switch mode {
	case "app", "grpc":
		os.Remove(args[0])
		ln, err := net.Listen("unix", args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Chmod(args[0], 0o666)
		if mode == "grpc" {
			gs := grpc.NewServer()
			testgrpc.RegisterTestServiceServer(gs, xfccGRPC{})
			gs.Serve(ln)
			return 0
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(r.Header.Values("X-Forwarded-Client-Cert"))
		}), Protocols: new(http.Protocols)}
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		srv.Serve(ln)
	case "get":
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", args[0])
		}}}
		resp, err := c.Get("http://" + args[1] + "/")
		if err != nil {
			fmt.Println("error", err)
			return 0
		}
		b, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, b)
	case "rpc":
		cc, err := grpc.NewClient("unix://"+args[0], grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(args[1]))
		if err != nil {
			fmt.Println("error", err)
			return 0
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var tr metadata.MD
		_, err = testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.Trailer(&tr))
		if err != nil {
			fmt.Println("error", err)
			return 0
		}
		fmt.Printf("ok %s", strings.Join(tr.Get("x-xfcc"), "|"))
	}
	return 0
}

type xfccGRPC struct {
	testgrpc.UnimplementedTestServiceServer
}

func (xfccGRPC) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	grpc.SetTrailer(ctx, metadata.Pairs("x-xfcc", strings.Join(md.Get("x-forwarded-client-cert"), ",")))
	return &testgrpc.SimpleResponse{}, nil
}

// TestTwoNodeInbound runs two procmesh nodes in network namespaces joined
// by a veth pair (10.77.0.1/30 and 10.77.0.2/30), each with its own
// built-in CA intermediate under one org root: node A's procmesh takes two
// callers' requests on its egress socket, node B's procmesh terminates
// their mTLS in front of its app. The app sees each caller's own SPIFFE ID
// per request, A verifies B's app identity (route server_id), an
// unregistered process on A is refused by A, a service on B served by an
// unregistered program is refused by B, and gRPC works through both.
func TestTwoNodeInbound(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the two-node test needs root (ip netns)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("the two-node test needs ip (apt-get install iproute2)")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	// -race: the race build make test compiled serves, not a second
	// compile of every dependency.
	build := exec.Command("go", "build", "-race", "-o", dir+"/", "./cmd/procmesh")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	self, _ := os.Executable()
	bin := map[string]string{}
	for i, name := range []string{"caller1", "caller2", "stranger", "app", "wrong"} {
		bin[name] = filepath.Join(dir, name)
		b, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin[name], append(b, fmt.Sprintf("\n%d\n", i)...), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nsA, nsB := netnsPair(t)
	pki := orgPKI(t, dir)

	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		os.Mkdir(d, 0o755)
	}
	common := `trust_domain: example.org
attest: {connect_record: "off"}
reload: {watch: false}
log: {flush_interval: 0s}
`
	callers := `["spiffe://example.org/caller1", "spiffe://example.org/caller2"]`
	cfgA := common + fmt.Sprintf(`listen: {socket: %[1]s/egress.sock}
identity: {state_dir: %[1]s/state, ca: {cert: %[2]s, key: %[3]s}}
workloads:
  - {spiffe_id: spiffe://example.org/caller1, selectors: ["unix:path:%[4]s"]}
  - {spiffe_id: spiffe://example.org/caller2, selectors: ["unix:path:%[5]s"]}
routes:
  - {name: orders, host: orders.test, upstream: "10.77.0.2:8443", server_id: spiffe://example.org/orders}
  - {name: rpc, host: rpc.test, upstream: "10.77.0.2:8444", server_id: spiffe://example.org/orders, protocol: http2}
  - {name: wrong, host: wrong.test, upstream: "10.77.0.2:8445", server_id: spiffe://example.org/orders}
  - {name: later, host: later.test, upstream: "10.77.0.2:8446", server_id: spiffe://example.org/orders}
policy:
  rules:
    - {from: %[6]s, to: [orders, rpc, wrong, later]}
`, a, pki.certA, pki.keyA, bin["caller1"], bin["caller2"], callers)
	cfgB := common + fmt.Sprintf(`listen: {socket: %[1]s/egress.sock}
admin: {listen: %[1]s/admin.sock}
identity: {state_dir: %[1]s/state, ca: {cert: %[2]s, key: %[3]s}}
workloads:
  - {spiffe_id: spiffe://example.org/orders, selectors: ["unix:path:%[4]s"]}
inbound:
  - {name: orders, listen: "10.77.0.2:8443", service: %[1]s/app.sock, identity: spiffe://example.org/orders, policy: {rules: [{from: %[5]s}]}}
  - {name: rpc, listen: "10.77.0.2:8444", service: %[1]s/grpc.sock, protocol: http2, identity: spiffe://example.org/orders, policy: {rules: [{from: %[5]s}]}}
  - {name: wrong, listen: "10.77.0.2:8445", service: %[1]s/wrong.sock, identity: spiffe://example.org/orders, policy: {rules: [{from: %[5]s}]}}
`, b, pki.certB, pki.keyB, bin["app"], callers)

	// B's services first: procmesh attests them at the first handshake.
	startHelper(t, nsB, bin["app"], "app", filepath.Join(b, "app.sock"))
	startHelper(t, nsB, bin["app"], "grpc", filepath.Join(b, "grpc.sock"))
	startHelper(t, nsB, bin["wrong"], "app", filepath.Join(b, "wrong.sock"))
	logB, procB := startNode(t, nsB, filepath.Join(dir, "procmesh"), filepath.Join(b, "procmesh.yaml"), cfgB, filepath.Join(b, "egress.sock"))
	logA, _ := startNode(t, nsA, filepath.Join(dir, "procmesh"), filepath.Join(a, "procmesh.yaml"), cfgA, filepath.Join(a, "egress.sock"))
	egress := filepath.Join(a, "egress.sock")
	dump := func() string { return "\nnode A:\n" + logA.String() + "\nnode B:\n" + logB.String() }

	for _, c := range []string{"caller1", "caller2"} {
		for range 2 {
			out := runIn(t, nsA, bin[c], "get", egress, "orders.test")
			want := `URI=spiffe://example.org/` + c + `"]`
			if !strings.HasPrefix(out, "200 ") || !strings.Contains(out, `By=spiffe://example.org/orders;Hash=`) || !strings.Contains(out, want) {
				t.Fatalf("%s through both nodes: %q, want the app to see %s%s", c, out, want, dump())
			}
		}
		out := runIn(t, nsA, bin[c], "rpc", egress, "rpc.test")
		if !strings.HasPrefix(out, "ok ") || !strings.Contains(out, "URI=spiffe://example.org/"+c) {
			t.Fatalf("%s gRPC through both nodes: %q%s", c, out, dump())
		}
	}
	// An unregistered process on A: refused by A, nothing leaves the node.
	if out := runIn(t, nsA, bin["stranger"], "get", egress, "orders.test"); !strings.HasPrefix(out, "403 ") {
		t.Fatalf("unregistered caller on A: %q, want 403%s", out, dump())
	}
	// A service on B served by an unregistered program: B presents no
	// certificate, A's caller gets an error, nothing reaches it.
	if out := runIn(t, nsA, bin["caller1"], "get", egress, "wrong.test"); strings.HasPrefix(out, "200 ") {
		t.Fatalf("the wrong program's service answered: %q%s", out, dump())
	}
	for _, want := range []string{`"event":"inbound_request"`, `"peer_id":"spiffe://example.org/caller2"`, `"peer_addr":"10.77.0.1:`} {
		if !strings.Contains(logB.String(), want) {
			t.Errorf("node B's audit lacks %s%s", want, dump())
		}
	}
	if !strings.Contains(logB.String(), `"inbound":"wrong"`) || !strings.Contains(logB.String(), "has no identity") {
		t.Errorf("node B did not audit the wrong program's service%s", dump())
	}
	// B's metrics count what its inbound listeners served and refused (its
	// admin socket is a Unix socket: reachable from the test's namespace).
	body := unixGet(t, filepath.Join(b, "admin.sock"), "/metrics")
	for series, least := range map[string]float64{
		`procmesh_inbound_total{code="200",decision="allow",kind="request",listener="orders"}`:  4,
		`procmesh_inbound_total{code="none",decision="deny",kind="handshake",listener="wrong"}`: 1,
	} {
		if v := metricValue(t, body, series); v < least {
			t.Errorf("node B's %s = %v; want at least %v", series, v, least)
		}
	}

	// Reload B: orders now allows caller1 only, and a new listener opens.
	if out := runIn(t, nsA, bin["caller1"], "get", egress, "later.test"); strings.HasPrefix(out, "200 ") {
		t.Fatalf("later.test answered before B listens on it: %q", out)
	}
	cfgB2 := strings.Replace(cfgB, `name: orders, listen: "10.77.0.2:8443", service: `+b+`/app.sock, identity: spiffe://example.org/orders, policy: {rules: [{from: `+callers+`}]}`,
		`name: orders, listen: "10.77.0.2:8443", service: `+b+`/app.sock, identity: spiffe://example.org/orders, policy: {rules: [{from: ["spiffe://example.org/caller1"]}]}`, 1)
	cfgB2 += fmt.Sprintf("  - {name: later, listen: \"10.77.0.2:8446\", service: %s/app.sock, identity: spiffe://example.org/orders, policy: {rules: [{from: %s}]}}\n", b, callers)
	if cfgB2 == cfgB {
		t.Fatal("test bug: B's config did not change")
	}
	if err := os.WriteFile(filepath.Join(b, "procmesh.yaml"), []byte(cfgB2), 0o600); err != nil {
		t.Fatal(err)
	}
	procB.Process.Signal(syscall.SIGHUP)
	for i := 0; !strings.Contains(logB.String(), `"inbound":4`) || !strings.Contains(logB.String(), "config reloaded"); i++ {
		if i == 600 {
			t.Fatalf("node B did not reload%s", dump())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := runIn(t, nsA, bin["caller1"], "get", egress, "later.test"); !strings.HasPrefix(out, "200 ") {
		t.Fatalf("caller1 on the listener the reload added: %q%s", out, dump())
	}
	if out := runIn(t, nsA, bin["caller2"], "get", egress, "orders.test"); strings.HasPrefix(out, "200 ") {
		t.Fatalf("caller2 still served after the reload removed it from the policy: %q%s", out, dump())
	}
	if out := runIn(t, nsA, bin["caller1"], "get", egress, "orders.test"); !strings.HasPrefix(out, "200 ") {
		t.Fatalf("caller1 after the reload: %q%s", out, dump())
	}
}

// netnsPair makes two network namespaces joined by a veth pair, A at
// 10.77.0.1/30 and B at 10.77.0.2/30, and removes them at cleanup.
func netnsPair(t *testing.T) (string, string) {
	t.Helper()
	suffix := fmt.Sprintf("%d", os.Getpid()%100000)
	nsA, nsB := "pmA"+suffix, "pmB"+suffix
	vA, vB := "pmvA"+suffix, "pmvB"+suffix
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", nsA).Run()
		exec.Command("ip", "netns", "del", nsB).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", nsA}, {"netns", "add", nsB},
		{"link", "add", vA, "type", "veth", "peer", "name", vB},
		{"link", "set", vA, "netns", nsA}, {"link", "set", vB, "netns", nsB},
		{"-n", nsA, "addr", "add", "10.77.0.1/30", "dev", vA}, {"-n", nsB, "addr", "add", "10.77.0.2/30", "dev", vB},
		{"-n", nsA, "link", "set", vA, "up"}, {"-n", nsB, "link", "set", vB, "up"},
		{"-n", nsA, "link", "set", "lo", "up"}, {"-n", nsB, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nsA, nsB
}

// startHelper runs bin in mode inside ns until the test ends.
func startHelper(t *testing.T, ns, bin, mode, sock string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, bin, sock)
	cmd.Env = append(os.Environ(), envTwoNode+"="+mode)
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitSocket(t, sock, out)
}

// startNode writes cfg and runs procmesh on it inside ns; SIGTERM at
// cleanup must drain and exit 0.
func startNode(t *testing.T, ns, procmesh, path, cfg, sock string) (*logtest.Buffer, *exec.Cmd) {
	t.Helper()
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, procmesh, "run", "-config", path)
	out := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("procmesh in %s after SIGTERM: %v\n%s", ns, err, out.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("procmesh in %s did not stop within 30s of SIGTERM", ns)
		}
	})
	waitSocket(t, sock, out)
	return out, cmd
}

func waitSocket(t *testing.T, sock string, out *logtest.Buffer) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after 30s:\n%s", sock, out.String())
}

// runIn runs bin in mode inside ns and returns its output.
func runIn(t *testing.T, ns, bin, mode string, args ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	cmd.Env = append(os.Environ(), envTwoNode+"="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, mode, err, out)
	}
	return string(out)
}

type twoNodePKI struct{ certA, keyA, certB, keyB string }

// orgPKI writes an org root for example.org and two intermediates signed
// by it, one per node (cert files hold intermediate then root).
func orgPKI(t *testing.T, dir string) twoNodePKI {
	t.Helper()
	tdURL, _ := url.Parse("spiffe://example.org")
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := func(cn string, serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, URIs: []*url.URL{tdURL}}
	}
	rootTmpl := caTmpl("example.org org root", 1)
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	var out twoNodePKI
	for i, node := range []string{"a", "b"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificate(rand.Reader, caTmpl("node "+node, int64(2+i)), rootCert, &key.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile := filepath.Join(dir, "ca-"+node+".pem"), filepath.Join(dir, "ca-"+node+".key")
		pemCerts := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER})...)
		kb, _ := x509.MarshalPKCS8PrivateKey(key)
		if err := os.WriteFile(certFile, pemCerts, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
			t.Fatal(err)
		}
		if node == "a" {
			out.certA, out.keyA = certFile, keyFile
		} else {
			out.certB, out.keyB = certFile, keyFile
		}
	}
	return out
}
