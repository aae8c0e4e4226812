package echo

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/procmesh/procmesh/tlsconf"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

func TestHTTP_ReportsAndRecordsClientIdentity(t *testing.T) {
	p := newPKI(t)
	srv := p.start(t, ModeHTTP, nil)
	base := "https://" + srv.Addr()
	cfg := p.clientConfig(t, idBilling, "http/1.1")
	c := httpClient(cfg)
	defer c.CloseIdleConnections()

	resp, body := get(t, c, base+"/hello?x=1", nil)
	var r Response
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get(HeaderClientID) != idBilling.String() {
		t.Errorf("status %d, %s: %q", resp.StatusCode, HeaderClientID, resp.Header.Get(HeaderClientID))
	}
	want := Response{SPIFFEID: idBilling.String(), Method: "GET", Path: "/hello", Host: srv.Addr(), Proto: "HTTP/1.1", Conn: r.Conn, Headers: r.Headers}
	if fmt.Sprint(r) != fmt.Sprint(want) || r.Conn == 0 || r.Resumed {
		t.Errorf("answer %+v, want %+v on a fresh connection", r, want)
	}

	// Keep-alive: the next requests reuse the connection.
	resp, body = get(t, c, base+"/status/418", strings.NewReader("twelve bytes"))
	if resp.StatusCode != 418 || !bytes.Contains(body, []byte(`"body_len":12`)) {
		t.Errorf("/status/418: %d %s", resp.StatusCode, body)
	}
	_, body = get(t, c, base+"/bytes/100000", nil)
	if len(body) != 100000 || string(body[:20]) != Pattern+Pattern[:4] || string(body[99984:]) != Pattern {
		t.Errorf("/bytes/100000: got %d bytes, starting %q", len(body), body[:min(20, len(body))])
	}

	// A new connection for the same identity resumes its TLS session.
	c2 := httpClient(cfg)
	defer c2.CloseIdleConnections()
	_, body = get(t, c2, base+"/again", nil)
	var r2 Response
	if err := json.Unmarshal(body, &r2); err != nil {
		t.Fatal(err)
	}
	if r2.Conn == r.Conn || !r2.Resumed || r2.SPIFFEID != idBilling.String() {
		t.Errorf("second connection: %+v, want a new resumed connection for billing", r2)
	}

	recs := srv.Records()
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	wantRecs := []struct {
		path    string
		conn    uint64
		resumed bool
	}{{"/hello", r.Conn, false}, {"/status/418", r.Conn, false}, {"/bytes/100000", r.Conn, false}, {"/again", r2.Conn, true}}
	for i, w := range wantRecs {
		got := recs[i]
		if got.SPIFFEID != idBilling || got.Path != w.path || got.ConnID != w.conn || got.Resumed != w.resumed || got.Proto != "HTTP/1.1" {
			t.Errorf("record %d: %+v, want %s on conn %d resumed=%v", i, got, w.path, w.conn, w.resumed)
		}
	}
	recs[0].Path = "mutated"
	if srv.Records()[0].Path != "/hello" {
		t.Error("Records returned the server's own slice")
	}
}

func TestHTTP_RefusesClients(t *testing.T) {
	p := newPKI(t)
	strangerCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: spiffeid.RequireTrustDomainFromString("stranger.test"), StateDir: t.TempDir() + "/s"})
	if err != nil {
		t.Fatal(err)
	}
	upstreamBundle := x509bundle.NewSet(p.upstream.Bundle())
	tests := []struct {
		name string
		auth tlsconfig.Authorizer
		cfg  *tls.Config
	}{
		{"no client certificate", nil, tlsconfig.TLSClientConfig(upstreamBundle, tlsconfig.AuthorizeID(idEcho))},
		{"certificate from an untrusted CA", nil, tlsconf.ClientConfig(mint(t, strangerCA, spiffeid.RequireFromString("spiffe://stranger.test/x")), upstreamBundle, tlsconfig.AuthorizeID(idEcho))},
		{"identity the authorizer refuses", tlsconfig.AuthorizeID(idBilling), p.clientConfig(t, idAnalyst)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := p.start(t, ModeHTTP, tt.auth)
			c := httpClient(tt.cfg)
			defer c.CloseIdleConnections()
			resp, err := c.Get("https://" + srv.Addr() + "/")
			if err == nil {
				_ = resp.Body.Close()
				t.Fatalf("request succeeded with status %d", resp.StatusCode)
			}
			if n := len(srv.Records()); n != 0 {
				t.Fatalf("%d records for a refused client", n)
			}
		})
	}
	// Control: the same server setup accepts a proper client.
	srv := p.start(t, ModeHTTP, tlsconfig.AuthorizeID(idBilling))
	c := httpClient(p.clientConfig(t, idBilling))
	defer c.CloseIdleConnections()
	if resp, _ := get(t, c, "https://"+srv.Addr()+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("control: status %d", resp.StatusCode)
	}
}
