package echo

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

func (p pki) startWith(t *testing.T, o Options) *Server {
	t.Helper()
	o.SVID = mint(t, p.upstream, idEcho)
	o.Bundles = x509bundle.NewSet(p.clients.Bundle())
	s := New(o)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func decode(t *testing.T, b []byte) Response {
	t.Helper()
	var r Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return r
}

// TestHTTP2_MultiplexedOnOneConnection: with ALPN h2 the HTTP listener
// speaks HTTP/2; every request of one client shares one connection, and
// http/1.1 clients still get HTTP/1.1 on the same listener.
func TestHTTP2_MultiplexedOnOneConnection(t *testing.T) {
	p := newPKI(t)
	srv := p.startWith(t, Options{})
	tr := &http.Transport{TLSClientConfig: p.clientConfig(t, idBilling, "h2"), Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	defer c.CloseIdleConnections()
	var conns []uint64
	for i := 0; i < 3; i++ {
		resp, body := get(t, c, "https://"+srv.Addr()+"/h2", nil)
		r := decode(t, body)
		if resp.Proto != "HTTP/2.0" || r.Proto != "HTTP/2.0" || r.SPIFFEID != idBilling.String() {
			t.Fatalf("answer %+v over %s", r, resp.Proto)
		}
		conns = append(conns, r.Conn)
	}
	if conns[0] != conns[1] || conns[1] != conns[2] {
		t.Errorf("HTTP/2 requests used connections %v, want one", conns)
	}
	_, body := get(t, httpClient(p.clientConfig(t, idBilling, "http/1.1")), "https://"+srv.Addr()+"/h1", nil)
	if r := decode(t, body); r.Proto != "HTTP/1.1" {
		t.Errorf("http/1.1 client got %s", r.Proto)
	}
	for _, rec := range srv.Records() {
		if rec.SPIFFEID != idBilling {
			t.Errorf("record %+v", rec)
		}
	}
}

// TestHTTP2_Disabled: DisableHTTP2 leaves an HTTP/1.1-only listener; a
// client that offers only h2 fails the handshake.
func TestHTTP2_Disabled(t *testing.T) {
	p := newPKI(t)
	srv := p.startWith(t, Options{DisableHTTP2: true})
	tr := &http.Transport{TLSClientConfig: p.clientConfig(t, idBilling, "h2"), Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP2(true)
	c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	if resp, err := c.Get("https://" + srv.Addr() + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("h2-only client got %s from an HTTP/1.1-only echo", resp.Proto)
	}
}

// TestHTTP3_RecordsPerQUICConnection: HTTP3 serves the same answers over
// QUIC on the TCP listener's port; ConnID is per QUIC connection, the
// client ID comes from the QUIC handshake, and AdvertiseHTTP3 names the
// port in Alt-Svc over TCP.
func TestHTTP3_RecordsPerQUICConnection(t *testing.T) {
	p := newPKI(t)
	srv := p.startWith(t, Options{HTTP3: true, AdvertiseHTTP3: true})
	_, port, _ := net.SplitHostPort(srv.Addr())

	h3 := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http3.Transport{TLSClientConfig: p.clientConfig(t, idAnalyst)}}
	}
	c1, c2 := h3(), h3()
	defer c1.Transport.(*http3.Transport).Close()
	defer c2.Transport.(*http3.Transport).Close()
	var got []Response
	for _, c := range []*http.Client{c1, c1, c2} {
		resp, body := get(t, c, "https://"+srv.Addr()+"/h3", nil)
		r := decode(t, body)
		if resp.Proto != "HTTP/3.0" || r.Proto != "HTTP/3.0" || r.SPIFFEID != idAnalyst.String() {
			t.Fatalf("answer %+v over %s", r, resp.Proto)
		}
		if want := fmt.Sprintf(`h3=":%s"; ma=86400`, port); resp.Header.Get("Alt-Svc") != want {
			t.Errorf("Alt-Svc %q, want %q", resp.Header.Get("Alt-Svc"), want)
		}
		got = append(got, r)
	}
	if got[0].Conn != got[1].Conn || got[1].Conn == got[2].Conn {
		t.Errorf("QUIC connection ids %d %d %d, want the first two equal and the third new", got[0].Conn, got[1].Conn, got[2].Conn)
	}
	recs := srv.Records()
	if len(recs) != 3 || recs[0].Proto != "HTTP/3.0" || recs[2].ConnID != got[2].Conn {
		t.Errorf("records %+v", recs)
	}

	// The TCP listener advertises too; SetAltSvc changes it.
	srv.SetAltSvc("clear")
	resp, _ := get(t, httpClient(p.clientConfig(t, idAnalyst, "http/1.1")), "https://"+srv.Addr()+"/tcp", nil)
	if resp.Header.Get("Alt-Svc") != "clear" {
		t.Errorf("Alt-Svc after SetAltSvc: %q", resp.Header.Get("Alt-Svc"))
	}
}

// TestHTTP_HeaderBytes: /header-bytes/N answers with an N-byte header, for
// clients' header limits.
func TestHTTP_HeaderBytes(t *testing.T) {
	p := newPKI(t)
	srv := p.startWith(t, Options{})
	resp, _ := get(t, httpClient(p.clientConfig(t, idBilling, "http/1.1")), "https://"+srv.Addr()+"/header-bytes/70000", nil)
	if v := resp.Header.Get(HeaderPadding); len(v) != 70000 || strings.Trim(v, "p") != "" {
		t.Errorf("padding header of %d bytes", len(v))
	}
}
