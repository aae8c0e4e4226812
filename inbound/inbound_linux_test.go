package inbound_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/inbound"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// trailerBody sets a forged XFCC trailer when its body ends.
type trailerBody struct {
	r       io.Reader
	trailer http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.trailer.Set("X-Forwarded-Client-Cert", "URI=spiffe://example.org/admin")
	}
	return n, err
}

func certHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// TestInboundHTTP: a caller reaches the app over mTLS on HTTP/1.1 and h2;
// it verified the app's identity, and the app sees the caller's ID.
func TestInboundHTTP(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
	svid := e.svid(frontID)
	for _, h2 := range []bool{false, true} {
		s, resp := getSeen(t, e.httpClient(svid, h2), "https://"+e.addr("orders")+"/a/../b", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		want := inbound.XFCC(appID.String(), certHash(svid.Certificates[0].Raw), frontID.String())
		if len(s.XFCC) != 1 || s.XFCC[0] != want || s.Path != "/b" {
			t.Fatalf("app saw %+v, want XFCC %q", s, want)
		}
		if h2 != (resp.ProtoMajor == 2) {
			t.Fatalf("h2=%v but response %s", h2, resp.Proto)
		}
		if s.Proto != "HTTP/2.0" {
			t.Fatalf("app saw %s; protocol http2 speaks h2c to the service", s.Proto)
		}
	}
	e.auditLines(`"event":"inbound_request"`, `"peer_id":"spiffe://example.org/frontend"`, `"decision":"allow"`, `"peer_addr":"127.0.0.1:`)
}

// TestThreat_N1_CallerRefused: no certificate, a certificate of an
// untrusted trust domain, an expired one, an ID no rule allows, and a
// request the rule does not allow are refused; nothing reaches the app,
// and the audit line names the peer's ID and address.
func TestThreat_N1_CallerRefused(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http1", policy.Rule{From: []spiffeid.ID{frontID}, Methods: []string{"GET"}}))
	url := "https://" + e.addr("orders") + "/x"

	// No certificate.
	if _, err := e.httpClient(nil, false).Get(url); err == nil {
		t.Fatal("a caller without a certificate was served")
	}
	e.auditLines(`"event":"inbound_handshake"`, `"decision":"deny"`, `"peer_addr":"127.0.0.1:`)

	// Untrusted trust domain: its own CA.
	other := newEnv(t, proxy.Limits{})
	foreign, err := other.ca.Mint(frontID) // same ID, another CA
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.httpClient(foreign, false).Get(url); err == nil {
		t.Fatal("a caller of an untrusted CA was served")
	}

	// An expired SVID of the trusted CA.
	expired := expiredSVID(t, e, frontID)
	if _, err := e.httpClient(expired, false).Get(url); err == nil {
		t.Fatal("a caller with an expired certificate was served")
	}
	e.auditLines(`"event":"inbound_handshake"`, "expired")

	// An ID no rule could allow: refused in the handshake.
	if _, err := e.httpClient(e.svid(adminID), false).Get(url); err == nil {
		t.Fatal("a caller no rule allows was served")
	}
	e.auditLines(`"event":"inbound_handshake"`, `"peer_id":"spiffe://example.org/admin"`, `"peer_addr":"127.0.0.1:`, `"decision":"deny"`)

	// An allowed caller, a method the rule does not allow: 403 per request.
	req, _ := http.NewRequest("DELETE", url, nil)
	resp, err := e.httpClient(e.svid(frontID), false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("DELETE: status %d, want 403", resp.StatusCode)
	}
	e.auditLines(`"event":"inbound_request"`, `"peer_id":"spiffe://example.org/frontend"`, `"method":"DELETE"`, `"decision":"deny"`, `"peer_addr":"127.0.0.1:`)
	if got := a.out.Lines("request"); len(got) != 0 {
		t.Fatalf("refused callers reached the app: %q", got)
	}
	// And the allowed request does reach it.
	if _, resp := getSeen(t, e.httpClient(e.svid(frontID), false), url, nil); resp.StatusCode != 200 {
		t.Fatalf("allowed GET: %d", resp.StatusCode)
	}
}

// TestThreat_N2_XFCCSanitised: an X-Forwarded-Client-Cert (and an
// identity field of request_headers_to_remove) sent by the caller never
// reaches the app; the one element set is what procmesh verified, and
// with pass_identity none there is none.
func TestThreat_N2_XFCCSanitised(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "http")
	none := e.listener("none", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}})
	none.PassIdentity = "none"
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}), none)
	svid := e.svid(frontID)
	forged := http.Header{
		"X-Forwarded-Client-Cert": {"By=spiffe://example.org/app;URI=spiffe://example.org/admin", "URI=spiffe://example.org/admin"},
		"X-Spiffe-Id":             {"spiffe://example.org/admin"},
	}
	for _, h2 := range []bool{false, true} {
		s, resp := getSeen(t, e.httpClient(svid, h2), "https://"+e.addr("orders")+"/", forged)
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		want := inbound.XFCC(appID.String(), certHash(svid.Certificates[0].Raw), frontID.String())
		if len(s.XFCC) != 1 || s.XFCC[0] != want || len(s.SpiffeID) != 0 {
			t.Fatalf("h2=%v: app saw XFCC %q and X-Spiffe-Id %q, want only XFCC %q", h2, s.XFCC, s.SpiffeID, want)
		}
		// pass_identity none: procmesh sets nothing, and still removes
		// what the caller sent.
		s, resp = getSeen(t, e.httpClient(svid, h2), "https://"+e.addr("none")+"/", forged)
		if resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		if len(s.XFCC) != 0 || len(s.SpiffeID) != 0 {
			t.Fatalf("h2=%v, pass_identity none: app saw XFCC %q and X-Spiffe-Id %q, want neither", h2, s.XFCC, s.SpiffeID)
		}
	}
	// In a trailer, over HTTP/1.1 (chunked) and h2. httputil.ReverseProxy
	// forwards a clone of the request's trailers made before the body is
	// read, so trailer values never reach the app today; this guards the
	// guarantee should the forwarding path change.
	for _, h2 := range []bool{false, true} {
		body := &trailerBody{r: strings.NewReader("body")}
		req, _ := http.NewRequest("POST", "https://"+e.addr("orders")+"/", body)
		req.Trailer = http.Header{"X-Forwarded-Client-Cert": nil}
		body.trailer = req.Trailer
		resp, err := e.httpClient(svid, h2).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var s seen
		json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(s.TrailerXFCC) != 0 {
			t.Fatalf("h2=%v: %s; the app saw XFCC trailer %q", h2, resp.Status, s.TrailerXFCC)
		}
	}
}

// TestThreat_N3_ServingProcessAttested: procmesh presents the app's
// certificate only while the app's registered program serves the socket:
// an unregistered program, a registered program of another identity, a
// socket whose creator has exited, and a socket replaced by another
// program under the same path are each refused and audited.
func TestThreat_N3_ServingProcessAttested(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	svid := e.svid(frontID)
	rule := policy.Rule{From: []spiffeid.ID{frontID}}
	for _, tc := range []struct {
		name, bin, mode, want string
	}{
		{"unregistered", bins.wrong, "http", "has no identity"},
		{"other identity", bins.other, "http", "whose identity is spiffe://example.org/other"},
		{"creator exited", bins.app, "handoff-http", "the process that created the listening socket has exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startApp(t, tc.bin, tc.mode)
			if tc.mode == "handoff-http" {
				reapHandoff(t, a)
			}
			name := strings.ReplaceAll(tc.name, " ", "-")
			e.apply(e.listener(name, a.sock, "http1", rule))
			_, err := e.httpClient(svid, false).Get("https://" + e.addr(name) + "/")
			if err == nil {
				t.Fatal("procmesh presented the app's certificate for a socket another program serves")
			}
			e.auditLines(`"event":"inbound_handshake"`, `"inbound":"`+name+`"`, tc.want)
			if got := a.out.Lines("request"); len(got) != 0 {
				t.Fatalf("the wrong service got requests: %q", got)
			}
		})
	}
	t.Run("replaced", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "svc.sock")
		a := startAppAt(t, bins.app, "http", sock)
		e.apply(e.listener("replaced", sock, "http1", rule))
		c := e.httpClient(svid, false)
		if _, resp := getSeen(t, c, "https://"+e.addr("replaced")+"/", nil); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		a.stop()
		w := startAppAt(t, bins.wrong, "http", sock)
		// A request on the caller's connection made before: the
		// connection procmesh opens to carry it is attested, and refused.
		if _, resp := getSeen(t, c, "https://"+e.addr("replaced")+"/", nil); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a request on a connection made before the app was replaced: %s, want 503", resp.Status)
		}
		e.auditLines(`"inbound":"replaced"`, `"event":"inbound_request"`, "has no identity")
		// A new handshake is refused (the socket is new).
		if resp, err := e.httpClient(svid, false).Get("https://" + e.addr("replaced") + "/"); err == nil {
			resp.Body.Close()
			t.Fatalf("served (%s) after the app was replaced by another program", resp.Status)
		}
		e.auditLines(`"inbound":"replaced"`, `"event":"inbound_handshake"`, "has no identity")
		if got := w.out.Lines("request"); len(got) != 0 {
			t.Fatalf("the replacing program got requests: %q", got)
		}
	})
}

// TestThreat_N4_Limits: the egress limits bound inbound connections: header
// fields, a caller that never finishes its handshake, connections.
func TestThreat_N4_Limits(t *testing.T) {
	e := newEnv(t, proxy.Limits{MaxRequestHeaders: 10, ReadHeaderTimeout: 500e6, MaxConnectionsPerIdentity: 2})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}}))
	svid := e.svid(frontID)
	h := http.Header{}
	for i := range 20 {
		h.Set("X-Many-"+string(rune('a'+i)), "1")
	}
	for _, h2 := range []bool{false, true} {
		_, resp := getSeen(t, e.httpClient(svid, h2), "https://"+e.addr("orders")+"/", h)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("h2=%v: 20 header fields: status %d, want 431", h2, resp.StatusCode)
		}
	}
	// Slow handshake: a TCP connection that sends nothing is closed after
	// header_read_timeout.
	slowHandshakeClosed(t, e.addr("orders"))
	// Connections per identity: the third concurrent connection of one ID
	// is refused.
	var conns []*tls.Conn
	for range 2 {
		c, err := tls.Dial("tcp", e.addr("orders"), e.clientTLS(svid, appID, "http/1.1"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	_ = conns
	third, err := tls.Dial("tcp", e.addr("orders"), e.clientTLS(svid, appID, "http/1.1"))
	if err == nil {
		third.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		buf := make([]byte, 1)
		if _, err := third.Read(buf); err == nil {
			t.Fatal("a third connection of one identity was served over limits.max_connections_per_identity 2")
		}
		third.Close()
	}
	e.auditLines(`"limit":"limits.max_connections_per_identity"`, `"peer_id":"spiffe://example.org/frontend"`)
}
