package echo

import (
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/procmesh/procmesh/tlsconf"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	tdExample  = spiffeid.RequireTrustDomainFromString("example.org")
	tdUpstream = spiffeid.RequireTrustDomainFromString("upstream.test")
	idBilling  = spiffeid.RequireFromString("spiffe://example.org/billing")
	idAnalyst  = spiffeid.RequireFromString("spiffe://example.org/analytics")
	idEcho     = spiffeid.RequireFromString("spiffe://upstream.test/echo")
)

// pki holds a client CA (example.org) and the upstream's CA (upstream.test).
type pki struct {
	clients, upstream *tlsconf.CA
}

func newPKI(t *testing.T) pki {
	t.Helper()
	var p pki
	for _, c := range []struct {
		td  spiffeid.TrustDomain
		dst **tlsconf.CA
	}{{tdExample, &p.clients}, {tdUpstream, &p.upstream}} {
		ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: c.td, StateDir: filepath.Join(t.TempDir(), c.td.Name())})
		if err != nil {
			t.Fatal(err)
		}
		*c.dst = ca
	}
	return p
}

func mint(t *testing.T, ca *tlsconf.CA, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	s, err := ca.Mint(id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (p pki) start(t *testing.T, mode Mode, auth tlsconfig.Authorizer) *Server {
	t.Helper()
	s := New(Options{SVID: mint(t, p.upstream, idEcho), Bundles: x509bundle.NewSet(p.clients.Bundle()), Authorizer: auth, Mode: mode})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// clientConfig is what procmesh uses upstream for identity id.
func (p pki) clientConfig(t *testing.T, id spiffeid.ID, nextProtos ...string) *tls.Config {
	return tlsconf.ClientConfig(mint(t, p.clients, id), x509bundle.NewSet(p.upstream.Bundle()), tlsconfig.AuthorizeID(idEcho), nextProtos...)
}

func httpClient(cfg *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

func get(t *testing.T, c *http.Client, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	method := http.MethodGet
	if body != nil {
		method = http.MethodPost
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}
