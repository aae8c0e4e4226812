package inbound_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/inbound"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// The services behind the listeners are child processes: the test binary
// copied to bins.app (registered as appID), bins.other (registered as
// otherID) and bins.wrong (not registered), re-executed in a helper mode.
var bins struct{ dir, app, other, wrong string }

const (
	envMode = "PROCMESH_INBOUND_HELPER"
	envSock = "PROCMESH_INBOUND_SOCK"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("example.org")
	appID   = spiffeid.RequireFromString("spiffe://example.org/app")
	otherID = spiffeid.RequireFromString("spiffe://example.org/other")
	frontID = spiffeid.RequireFromString("spiffe://example.org/frontend")
	adminID = spiffeid.RequireFromString("spiffe://example.org/admin")
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envMode); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(envSock)))
	}
	dir, err := os.MkdirTemp("", "procmesh-inbound-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	self, _ := os.Executable()
	bins.dir = dir
	for _, b := range []struct {
		dst   *string
		name  string
		extra string
	}{{&bins.app, "app", ""}, {&bins.other, "other", "\nother\n"}, {&bins.wrong, "wrong", "\nwrong\n"}} {
		*b.dst = filepath.Join(dir, b.name)
		if err == nil {
			err = copyExe(self, *b.dst, b.extra)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "inbound test setup:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func copyExe(src, dst, extra string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, append(b, extra...), 0o755)
}

// seen is what the helper app reports of one request.
type seen struct {
	Method string   `json:"method"`
	Path   string   `json:"path"`
	XFCC   []string `json:"xfcc"`
	Proto  string   `json:"proto"`
	// SpiffeID is the X-Spiffe-Id field, which newEnv's server removes
	// (request_headers_to_remove).
	SpiffeID []string `json:"x_spiffe_id"`

	TrailerXFCC []string `json:"trailer_xfcc"`
}

// runHelper serves sock until stdin reaches EOF. Modes: http (HTTP/1.1
// and h2c; answers with what it saw, as JSON, and prints a line per
// request; /slow answers after 3s, /many-headers with 150 header fields,
// /big-headers with a 100 KiB one), grpc (the interop TestService; UnaryCall puts the XFCC it saw
// in the trailer x-xfcc), echo (raw bytes back), handoff-http (creates
// the socket, hands it to a child serving http, exits).
func runHelper(mode, sock string) int {
	var ln net.Listener
	var err error
	if mode == "inherited-http" {
		ln, err = net.FileListener(os.NewFile(3, "listener"))
	} else {
		os.Remove(sock)
		ln, err = net.Listen("unix", sock)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode != "inherited-http" { // that one is killed by the test
		go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	}
	switch mode {
	case "http", "inherited-http":
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // so that trailers are read
			s := seen{Method: r.Method, Path: r.URL.Path, XFCC: r.Header.Values("X-Forwarded-Client-Cert"), Proto: r.Proto,
				SpiffeID: r.Header.Values("X-Spiffe-Id"), TrailerXFCC: r.Trailer.Values("X-Forwarded-Client-Cert")}
			fmt.Printf("request %s %s\n", r.Method, r.URL.Path)
			switch r.URL.Path {
			case "/slow":
				time.Sleep(3 * time.Second)
			case "/many-headers":
				for i := range 150 {
					w.Header().Set(fmt.Sprintf("X-H-%d", i), "1")
				}
			case "/big-headers":
				w.Header().Set("X-Big", strings.Repeat("x", 100<<10))
			}
			json.NewEncoder(w).Encode(s)
		})
		srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		srv.Serve(ln)
	case "grpc":
		gs := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(gs, grpcApp{})
		gs.Serve(ln)
	case "echo":
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			fmt.Println("connection")
			go func() { io.Copy(c, c); c.Close() }()
		}
	case "handoff-http":
		f, err := ln.(*net.UnixListener).File()
		if err != nil {
			return 1
		}
		self, _ := os.Executable()
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), envMode+"=inherited-http")
		cmd.ExtraFiles = []*os.File{f} // no stdout: the test's pipe would stay open
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return 1
		}
		fmt.Printf("child %d\n", cmd.Process.Pid)
		return 0 // the child serves; its stdin is /dev/null, it is killed by the test
	}
	return 0
}

type grpcApp struct {
	testgrpc.UnimplementedTestServiceServer
}

func (grpcApp) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	grpc.SetTrailer(ctx, metadata.Pairs("x-xfcc", strings.Join(md.Get("x-forwarded-client-cert"), "|")))
	return &testgrpc.SimpleResponse{Payload: req.GetPayload()}, nil
}

// app is a running helper service.
type app struct {
	sock  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *logtest.Buffer
}

// startApp runs bin in mode serving a fresh socket and waits for it.
func startApp(t testing.TB, bin, mode string) *app {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "svc.sock")
	return startAppAt(t, bin, mode, sock)
}

func startAppAt(t testing.TB, bin, mode, sock string) *app {
	t.Helper()
	a := &app{sock: sock, out: &logtest.Buffer{}}
	a.cmd = exec.Command(bin)
	a.cmd.Env = append(os.Environ(), envMode+"="+mode, envSock+"="+sock)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	var err error
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	waitFor(t, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return a
}

func (a *app) stop() {
	a.stdin.Close()
	a.cmd.Wait()
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 5s")
}

// env is a node: a builtin CA for example.org, the entries of bins.app and
// bins.other, a resolver, an inbound server, and an audit log.
type env struct {
	t       testing.TB
	ca      *tlsconf.CA
	caDir   string
	store   *tlsconf.Store
	bundles *x509bundle.Set
	srv     *inbound.Server
	audit   *logtest.Buffer
	log     *logtest.Buffer
}

func newEnv(t testing.TB, lim proxy.Limits) *env {
	t.Helper()
	e := &env{t: t, audit: &logtest.Buffer{}, log: &logtest.Buffer{}}
	var err error
	e.caDir = filepath.Join(t.TempDir(), "ca")
	e.ca, err = tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: td, StateDir: e.caDir})
	if err != nil {
		t.Fatal(err)
	}
	e.bundles = x509bundle.NewSet(e.ca.Bundle())
	e.store = tlsconf.NewStore(e.ca, e.bundles, tlsconf.StoreOptions{})
	t.Cleanup(func() { e.store.Close() })
	reg, err := registry.New([]registry.Entry{
		{ID: appID, Selectors: []string{"unix:path:" + bins.app}},
		{ID: otherID, Selectors: []string{"unix:path:" + bins.other}, Index: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := workload.New(attest.New(attest.Options{}), reg, e.store, workload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	e.srv, err = inbound.New(inbound.Options{
		Source: e.store, Resolver: res, Limits: lim,
		RequestHeadersToRemove: []string{"X-Spiffe-Id"},
		Logger:                 zerolog.New(e.log),
		Audit:                  zerolog.New(e.audit).With().Str("log", "audit").Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if testing.Verbose() {
			t.Logf("audit:\n%s", e.audit.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	})
	return e
}

// listener returns an inbound listener on a free loopback port whose
// policy allows rules.
func (e *env) listener(name, sock, protocol string, rules ...policy.Rule) inbound.Listener {
	e.t.Helper()
	for i := range rules {
		rules[i].To = []string{name}
	}
	pol, err := policy.New(false, rules, policy.WithRouteProtocols(map[string]string{name: protocol}))
	if err != nil {
		e.t.Fatal(err)
	}
	pass := "xfcc"
	if protocol == "tcp" {
		pass = "proxy-v2"
	}
	return inbound.Listener{Name: name, Listen: freeAddr(e.t), Service: sock, Protocol: protocol, Identity: appID, Policy: pol, PassIdentity: pass}
}

func (e *env) apply(ls ...inbound.Listener) {
	e.t.Helper()
	if err := e.srv.Apply(ls, 5*time.Second); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) addr(name string) string { return e.srv.Addr(name).String() }

// svid mints an SVID of this node's CA for id.
func (e *env) svid(id spiffeid.ID) *x509svid.SVID {
	e.t.Helper()
	s, err := e.ca.Mint(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// clientTLS is a caller's config: it presents svid (nil: none) and
// verifies that the server is serverID.
func (e *env) clientTLS(svid *x509svid.SVID, serverID spiffeid.ID, protos ...string) *tls.Config {
	var cfg *tls.Config
	if svid == nil {
		cfg = tlsconfig.TLSClientConfig(e.bundles, tlsconfig.AuthorizeID(serverID))
	} else {
		cfg = tlsconfig.MTLSClientConfig(svid, e.bundles, tlsconfig.AuthorizeID(serverID))
	}
	cfg.NextProtos = protos
	return cfg
}

// httpClient calls as svid over HTTP/1.1, or h2 with h2 set.
func (e *env) httpClient(svid *x509svid.SVID, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: e.clientTLS(svid, appID), Protocols: new(http.Protocols)}
	if h2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func getSeen(t testing.TB, c *http.Client, url string, hdr http.Header) (seen, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var s seen
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	return s, resp
}

// auditLines waits for audit lines containing every sub.
func (e *env) auditLines(subs ...string) []string {
	e.t.Helper()
	var got []string
	for i := 0; i < 300; i++ {
		if got = e.audit.Lines(subs...); len(got) > 0 {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("no audit line with %q; audit:\n%s", subs, e.audit.String())
	return nil
}

// reapHandoff waits for a handoff helper to exit, leaving its child
// serving the socket it created, and kills that child at cleanup.
func reapHandoff(t testing.TB, a *app) {
	t.Helper()
	a.cmd.Wait()
	var pid int
	waitFor(t, func() bool {
		for _, l := range a.out.Lines("child ") {
			fmt.Sscanf(l, "child %d", &pid)
		}
		return pid > 0
	})
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
}

// expiredSVID signs an X509-SVID for id with e's CA key that expired an
// hour ago.
func expiredSVID(t testing.TB, e *env, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	dir := e.caDir
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:         []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
}

// slowHandshakeClosed: a TCP connection that never starts its handshake
// is closed by procmesh (limits.header_read_timeout).
func slowHandshakeClosed(t testing.TB, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a connection that sent no handshake was still open after 10s")
	}
}

// freeAddr returns a loopback address with a port free a moment ago: a
// listener's address is its identity across Apply calls, so it must not
// be ":0".
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
