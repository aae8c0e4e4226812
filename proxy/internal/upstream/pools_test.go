package upstream

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/tlsconf"
)

// poolsEnv is an in-process pools with a real mTLS echo upstream serving
// HTTP/1.1, HTTP/2 and HTTP/3.
type poolsEnv struct {
	ps     *Pools
	up     *echo.Server
	w      tlsconf.Workload
	echoID spiffeid.ID
}

func newPoolsEnv(tb testing.TB) *poolsEnv {
	tb.Helper()
	dir := tb.TempDir()
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), StateDir: filepath.Join(dir, "ca")})
	if err != nil {
		tb.Fatal(err)
	}
	upCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("upstream.test"), StateDir: filepath.Join(dir, "up")})
	if err != nil {
		tb.Fatal(err)
	}
	pe := &poolsEnv{echoID: spiffeid.RequireFromString("spiffe://upstream.test/echo")}
	svid, err := upCA.Mint(pe.echoID)
	if err != nil {
		tb.Fatal(err)
	}
	pe.up = echo.New(echo.Options{SVID: svid, Bundles: x509bundle.NewSet(ca.Bundle()), HTTP3: true})
	if err := pe.up.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pe.up.Close() })
	store := tlsconf.NewStore(ca, x509bundle.NewSet(ca.Bundle(), upCA.Bundle()), tlsconf.StoreOptions{})
	tb.Cleanup(func() { store.Close() })
	pe.ps = NewPools(store, Options{}, zerolog.Nop())
	tb.Cleanup(pe.ps.CloseAll)
	pe.w = tlsconf.Workload{ID: spiffeid.RequireFromString("spiffe://example.org/bench")}
	return pe
}

func (pe *poolsEnv) route(proto string) *Route {
	return &Route{Name: proto, Host: "echo.test", Upstream: pe.up.Addr(), ServerID: pe.echoID, Protocol: proto}
}

func (pe *poolsEnv) get(tb testing.TB, proto, path string) *http.Response {
	tb.Helper()
	req := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "https", Host: "echo.test", Path: path}, Header: http.Header{}, Host: "echo.test"}
	resp, err := pe.ps.Get(pe.w, pe.route(proto)).Transport().RoundTrip(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// BenchmarkUpstreamRoundTrip measures one pooled request through a pool's
// transport to a real mTLS echo upstream, per protocol. Allocations
// include the in-process upstream's.
func BenchmarkUpstreamRoundTrip(b *testing.B) {
	pe := newPoolsEnv(b)
	for _, proto := range []string{ProtocolHTTP1, ProtocolHTTP2, ProtocolHTTP3} {
		b.Run(proto, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp := pe.get(b, proto, "/bench")
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// TestPoolRetireHTTP3: a reload that drops an HTTP/3 pool lets a response
// in flight finish, then closes the pool's QUIC connection; CloseAll leaves
// no goroutine behind.
func TestPoolRetireHTTP3(t *testing.T) {
	pe := newPoolsEnv(t)
	// Warm the upstream up with a client of its own, so that its serving
	// goroutines exist before counting.
	warm := &http3.Transport{TLSClientConfig: tlsconf.ClientConfig(tlsconf.SVIDSourceFor(pe.ps.src, pe.w), pe.ps.src.Bundles(), tlsconfig.AuthorizeAny())}
	r, err := warm.RoundTrip(&http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "https", Host: pe.up.Addr(), Path: "/warm"}, Header: http.Header{}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	warm.Close()
	base := stableGoroutines()
	resp := pe.get(t, ProtocolHTTP3, "/bytes/4000000")
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	pe.ps.Retain(func(spiffeid.ID, *Route) bool { return false }) // a reload that dropped every route
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 4000000-1000 {
		t.Fatalf("response cut by the reload after %d bytes: %v", n+1000, err)
	}
	// The shared UDP socket's two goroutines stay until CloseAll.
	if !waitGoroutines(base + 2) {
		t.Errorf("%d goroutines after the dropped pool's last response, %d before its first", runtime.NumGoroutine(), base)
	}

	resp = pe.get(t, ProtocolHTTP3, "/again")
	resp.Body.Close()
	pe.ps.CloseAll()
	if !waitGoroutines(base) {
		t.Errorf("%d goroutines after CloseAll, %d before", runtime.NumGoroutine(), base)
	}
}

// stableGoroutines waits for the goroutine count to stop falling.
func stableGoroutines() int {
	n := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// waitGoroutines waits up to 5s for the goroutine count to drop to n.
func waitGoroutines(n int) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if runtime.NumGoroutine() <= n {
			return true
		}
	}
	return false
}

// TestPoolsCountDials: every protocol's new connection is counted for its
// route, and a reused one is not.
func TestPoolsCountDials(t *testing.T) {
	pe := newPoolsEnv(t)
	for _, proto := range []string{ProtocolHTTP1, ProtocolHTTP2, ProtocolHTTP3} {
		for range 2 {
			resp := pe.get(t, proto, "/dials")
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if got := pe.ps.Dials()[proto]; got != 1 {
			t.Errorf("%s: %d dials for two requests on a kept connection; want 1", proto, got)
		}
	}
	c, err := pe.ps.Get(pe.w, pe.route(ProtocolTCP)).DialTLS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := pe.ps.Dials()[ProtocolTCP]; got != 1 {
		t.Errorf("tcp: %d dials; want 1", got)
	}
}
