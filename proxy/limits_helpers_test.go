package proxy_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
)

// Helpers of the limits, smuggling, flood and WebSocket tests: a second
// data plane with chosen Limits next to the env's, an mTLS upstream
// running any handler, a raw-bytes client, and polling.

// limProxy is a data plane with its own Limits, sharing the env's
// resolver, identities and upstreams.
type limProxy struct {
	sock, rawSock string
	srv           *proxy.Server
	audit, log    *logtest.Buffer
}

// startLimited serves the env's routes, plus extra, every caller allowed,
// with the given limits, on sockets of its own.
func (e *env) startLimited(name string, lim proxy.Limits, extra ...proxy.Route) *limProxy {
	e.t.Helper()
	// One idle upstream connection per pool: goroutine counts after a
	// burst come back to what they were after one request.
	return e.startLimitedUp(name, lim, proxy.UpstreamOptions{MaxIdlePerPool: 1}, extra...)
}

// startLimitedUp is startLimited with upstream options too.
func (e *env) startLimitedUp(name string, lim proxy.Limits, up proxy.UpstreamOptions, extra ...proxy.Route) *limProxy {
	e.t.Helper()
	lp := &limProxy{
		sock: filepath.Join(e.dir, name+".sock"), rawSock: filepath.Join(e.dir, name+"-raw.sock"),
		audit: &logtest.Buffer{}, log: &logtest.Buffer{},
	}
	var err error
	lp.srv, err = proxy.New(e.resolver, e.store, e.statePlus(extra...), proxy.Options{
		Limits: lim, Upstream: up,
		Audit: zerolog.New(lp.audit), Logger: zerolog.New(lp.log),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.serve(lp.srv, lp.sock, lp.rawSock)
	return lp
}

// statePlus is the env's routes (echo, echo-raw) plus extra, allow-all.
func (e *env) statePlus(extra ...proxy.Route) *proxy.State {
	e.t.Helper()
	pol, err := policy.New(true, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.statePolicy(pol, extra...)
}

// statePolicy is the env's routes (echo, echo-raw) plus extra, under pol.
func (e *env) statePolicy(pol *policy.Policy, extra ...proxy.Route) *proxy.State {
	e.t.Helper()
	routes := append([]proxy.Route{
		{Name: "echo", Host: "echo.test", Upstream: e.echo.Addr(), ServerID: echoID, Protocol: proxy.ProtocolHTTP1},
		{Name: "echo-raw", Host: "echo-raw.test", Upstream: e.raw.Addr(), ServerID: echoID, Protocol: proxy.ProtocolTCP},
	}, extra...)
	st, err := proxy.NewState(routes, pol)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// selfAsA registers the test binary itself as spiffe://example.org/a, for
// tests that speak raw bytes in-process; bins are other client binaries
// to register as a too.
func (e *env) selfAsA(bins ...string) {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	entries := []registry.Entry{{ID: idA, Selectors: []string{pathSel(self)}}}
	for _, b := range bins {
		entries = append(entries, registry.Entry{ID: idA, Selectors: []string{pathSel(b)}})
	}
	e.setEntries(entries...)
}

// testUpstream is an mTLS upstream presenting echoID and running h; it
// records the SPIFFE ID of every client it verified.
type testUpstream struct {
	addr string
	mu   sync.Mutex
	ids  []spiffeid.ID
}

func (u *testUpstream) clientIDs() []spiffeid.ID {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]spiffeid.ID(nil), u.ids...)
}

func (e *env) startUpstream(h http.Handler) *testUpstream {
	e.t.Helper()
	return e.startUpstreamWith(func(*http.Server) {}, h)
}

// startUpstreamWith is startUpstream with the server's settings changed by
// configure before it starts.
func (e *env) startUpstreamWith(configure func(*http.Server), h http.Handler) *testUpstream {
	e.t.Helper()
	svid, err := e.upCA.Mint(echoID)
	if err != nil {
		e.t.Fatal(err)
	}
	conf := tlsconfig.MTLSServerConfig(svid, x509bundle.NewSet(e.ca.Bundle()), tlsconfig.AuthorizeAny())
	conf.NextProtos = []string{"http/1.1"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	u := &testUpstream{addr: ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0]); err == nil {
				u.mu.Lock()
				u.ids = append(u.ids, id)
				u.mu.Unlock()
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          newDiscardLogger(),
	}
	configure(srv)
	go srv.Serve(tls.NewListener(ln, conf))
	e.t.Cleanup(func() { srv.Close() })
	return u
}

// upRoute is a route named name (host name.test) to u.
func upRoute(name string, u *testUpstream) proxy.Route {
	return proxy.Route{Name: name, Host: name + ".test", Upstream: u.addr, ServerID: echoID, Protocol: proxy.ProtocolHTTP1}
}

// rawExchange writes req on a new connection to sock, while reading
// everything until the server closes (or resets) it or d passes; it
// returns what it read and whether the server closed.
func rawExchange(t *testing.T, sock, req string, d time.Duration) (resp string, closed bool) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	go io.WriteString(c, req) // the server may stop reading: a refusal
	b, err := io.ReadAll(c)
	var ne net.Error
	return string(b), !errors.As(err, &ne) || !ne.Timeout() // a reset is a close too
}

// eventually polls cond every 5ms until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// settles waits until the goroutine count is back to within slack of
// base, and fails the test with a dump of the extra goroutines otherwise.
func settles(t *testing.T, base, slack int, d time.Duration) {
	t.Helper()
	if eventually(d, func() bool { return runtime.NumGoroutine() <= base+slack }) {
		return
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	t.Fatalf("%d goroutines, want at most %d+%d:\n%s", runtime.NumGoroutine(), base, slack, buf)
}

// warmBaseline makes one request through sock so that pooled upstream
// connections exist, then returns the goroutine count once it is stable.
func warmBaseline(t *testing.T, sock string) int {
	t.Helper()
	resp, _ := rawExchange(t, sock, "GET /warm HTTP/1.1\r\nHost: echo.test\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 200") {
		t.Fatalf("warm-up request: %q", resp)
	}
	prev := -1
	eventually(2*time.Second, func() bool {
		n := runtime.NumGoroutine()
		stable := n == prev
		prev = n
		return stable
	})
	return runtime.NumGoroutine()
}

func newDiscardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
