package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/proxy"
)

// startWithOptions is startLimited with the rest of the Options set by set.
func (e *env) startWithOptions(name string, set func(*proxy.Options)) *limProxy {
	e.t.Helper()
	lp := &limProxy{
		sock: filepath.Join(e.dir, name+".sock"), rawSock: filepath.Join(e.dir, name+"-raw.sock"),
		audit: &logtest.Buffer{}, log: &logtest.Buffer{},
	}
	opts := proxy.Options{
		Audit: zerolog.New(lp.audit), Logger: zerolog.New(lp.log)}
	set(&opts)
	var err error
	// echo-h2.test: the echo upstream over HTTP/2, which the fast path
	// reaches through the pool's transport.
	h2 := proxy.Route{Name: "echo-h2", Host: "echo-h2.test", Upstream: e.echo.Addr(), ServerID: echoID, Protocol: proxy.ProtocolHTTP2}
	if lp.srv, err = proxy.New(e.resolver, e.store, e.statePlus(h2), opts); err != nil {
		e.t.Fatal(err)
	}
	e.serve(lp.srv, lp.sock, lp.rawSock)
	return lp
}

// identityFields are the fields of REDTEAM finding 7, as a client would
// forge them, with a field that must still arrive.
var identityFields = map[string]string{
	"X-Forwarded-Client-Cert": "By=spiffe://upstream.test/echo;URI=spiffe://example.org/admin",
	"X-Client-SPIFFE-ID":      "spiffe://example.org/admin",
	"X-Spiffe-Id":             "spiffe://example.org/admin",
	"X-Real-IP":               "1.2.3.4",
	"X-Custom-Caller":         "spiffe://example.org/admin",
	"X-Keep":                  "kept",
}

// sentValue is the value sendForged sends for field k, in any case.
func sentValue(k string) string {
	for name, v := range identityFields {
		if strings.EqualFold(name, k) {
			return v
		}
	}
	return ""
}

// sendForged sends GET (or, chunked, a POST whose body net/http must
// frame) with identityFields to the echo upstream through lp on client, and
// returns the fields the echo upstream received and the caller it verified.
func sendForged(t *testing.T, c *http.Client, host string, chunked bool) (map[string][]string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/p9", nil)
	if chunked {
		// An unknown length: the client sends Transfer-Encoding: chunked,
		// which the fast path hands to net/http.
		req, _ = http.NewRequest(http.MethodPost, "http://"+host+"/p9", io.MultiReader(strings.NewReader("body")))
		req.ContentLength = -1
	}
	for k, v := range identityFields {
		req.Header[k] = []string{v} // as spelt: X-Client-SPIFFE-ID
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	var rep echo.Response
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("echo reply %q: %v", b, err)
	}
	return rep.Headers, rep.SPIFFEID
}

// TestThreat_P9_IdentityHeadersRemoved: the identity-claiming fields a
// calling process sends (X-Forwarded-Client-Cert, X-Spiffe-Id,
// X-Client-Spiffe-Id, X-Real-IP) never reach the upstream, on the fast
// path (to HTTP/1.1 and HTTP/2 upstreams), on net/http (a chunked body)
// and over h2c; the upstream learns the
// caller from the certificate only. Other fields pass. The list is
// upstream.request_headers_to_remove: a configured list replaces it.
func TestThreat_P9_IdentityHeadersRemoved(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	paths := []struct {
		name           string
		client         func(sock string) *http.Client
		host           string
		chunked        bool
		fast, handoffs int64 // the server's counts after this request
	}{
		{"fast-path", unixClient, "echo.test", false, 1, 0},
		{"fast-path to an h2 upstream", unixClient, "echo-h2.test", false, 2, 0},
		{"net/http", unixClient, "echo.test", true, 2, 1},
		{"h2c", h2cClient, "echo.test", false, 2, 2},
	}
	check := func(t *testing.T, lp *limProxy, removed, kept []string) {
		for _, p := range paths {
			got, caller := sendForged(t, p.client(lp.sock), p.host, p.chunked)
			if caller != idA.String() {
				t.Errorf("%s: upstream verified %s, want %s", p.name, caller, idA)
			}
			for _, k := range removed {
				if v, ok := got[k]; ok {
					t.Errorf("%s: upstream received %s: %q", p.name, k, v)
				}
			}
			for _, k := range kept {
				if v, want := got[k], sentValue(k); len(v) != 1 || v[0] != want {
					t.Errorf("%s: upstream received %s %q, want %q", p.name, k, v, want)
				}
			}
			// Each request took the path it names.
			if st := lp.srv.Stats(); st.FastRequests != p.fast || st.Handoffs != p.handoffs {
				t.Errorf("%s: %+v, want %d fast requests and %d handoffs", p.name, st, p.fast, p.handoffs)
			}
		}
	}

	t.Run("default", func(t *testing.T) {
		lp := e.startWithOptions("p9-default", func(*proxy.Options) {})
		check(t, lp, []string{"X-Forwarded-Client-Cert", "X-Client-Spiffe-Id", "X-Spiffe-Id", "X-Real-Ip"},
			[]string{"X-Custom-Caller", "X-Keep"})
	})
	t.Run("configured", func(t *testing.T) {
		lp := e.startWithOptions("p9-configured", func(o *proxy.Options) {
			o.RequestHeadersToRemove = []string{"x-custom-caller", "X-FORWARDED-CLIENT-CERT"}
		})
		check(t, lp, []string{"X-Forwarded-Client-Cert", "X-Custom-Caller"}, []string{"X-Keep", "X-Spiffe-Id", "X-Real-Ip"})
	})
}
