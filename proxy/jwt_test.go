package proxy_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
)

const stsAudience = "https://sts.example"

// jwtSeen is what the token-checking upstream saw of one request.
type jwtSeen struct {
	Path    string `json:"path"`
	Proto   string `json:"proto"`
	MTLS    string `json:"mtls"`    // the client certificate's SPIFFE ID
	Fields  int    `json:"fields"`  // how many token fields arrived
	Subject string `json:"subject"` // the validated token's sub
	JTI     string `json:"jti"`
	Token   string `json:"-"`
	Err     string `json:"err,omitempty"`
}

// jwtUpstream is an mTLS upstream that authorises with JWT-SVIDs, as an
// STS would: it validates the token in header with go-spiffe's
// jwtsvid.ParseAndValidate against the JWT bundle it currently holds, and
// records the subject per request; an invalid or missing token is a 401.
type jwtUpstream struct {
	*testUpstream
	header string

	mu      sync.Mutex
	bundles jwtbundle.Source
	seen    []jwtSeen
}

func (e *env) startJWTUpstream(header string, bundles jwtbundle.Source) *jwtUpstream {
	e.t.Helper()
	return e.startJWTUpstreamFor(header, bundles, x509bundle.NewSet(e.ca.Bundle()))
}

// startJWTUpstreamFor is startJWTUpstream verifying procmesh's client
// certificates with clients.
func (e *env) startJWTUpstreamFor(header string, bundles jwtbundle.Source, clients x509bundle.Source) *jwtUpstream {
	e.t.Helper()
	u := &jwtUpstream{header: header, bundles: bundles}
	svid, err := e.upCA.Mint(echoID)
	if err != nil {
		e.t.Fatal(err)
	}
	conf := tlsconfig.MTLSServerConfig(svid, clients, tlsconfig.AuthorizeAny())
	conf.NextProtos = []string{"h2", "http/1.1"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	u.testUpstream = &testUpstream{addr: ln.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(u.serve), ReadHeaderTimeout: 10 * time.Second, ErrorLog: newDiscardLogger()}
	go srv.Serve(tls.NewListener(ln, conf))
	e.t.Cleanup(func() { srv.Close() })
	return u
}

func (u *jwtUpstream) setBundles(b jwtbundle.Source) {
	u.mu.Lock()
	u.bundles = b
	u.mu.Unlock()
}

func (u *jwtUpstream) serve(w http.ResponseWriter, r *http.Request) {
	s := jwtSeen{Path: r.URL.Path, Proto: r.Proto, Fields: len(r.Header.Values(u.header))}
	if id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0]); err == nil {
		s.MTLS = id.String()
	}
	u.mu.Lock()
	bundles := u.bundles
	u.mu.Unlock()
	if s.Fields != 1 {
		s.Err = fmt.Sprintf("%d %s fields", s.Fields, u.header)
	} else {
		tok := r.Header.Get(u.header)
		if u.header == "Authorization" {
			var ok bool
			if tok, ok = strings.CutPrefix(tok, "Bearer "); !ok {
				s.Err = "not a bearer token"
			}
		}
		s.Token = tok
		if s.Err == "" {
			svid, err := jwtsvid.ParseAndValidate(tok, bundles, []string{stsAudience})
			if err != nil {
				s.Err = err.Error()
			} else {
				s.Subject = svid.ID.String()
				s.JTI, _ = svid.Claims["jti"].(string)
			}
		}
	}
	u.mu.Lock()
	u.seen = append(u.seen, s)
	u.mu.Unlock()
	if s.Err != "" {
		http.Error(w, s.Err, http.StatusUnauthorized)
		return
	}
	json.NewEncoder(w).Encode(s)
}

func (u *jwtUpstream) records() []jwtSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]jwtSeen(nil), u.seen...)
}

// jwtRoute is a route named name to u that attaches the caller's JWT-SVID
// for stsAudience in u's header.
func jwtRoute(name string, u *jwtUpstream) proxy.Route {
	r := upRoute(name, u.testUpstream)
	r.JWTAudience, r.JWTHeader = stsAudience+" https://other.example", u.header
	return r
}

// jwtStore is an SVID store over the env's CA that signs JWT-SVIDs with
// keys under the env's directory (nil keys: it issues none).
func (e *env) jwtStore(keys *tlsconf.JWTKeys) *tlsconf.Store {
	e.t.Helper()
	bundles := x509bundle.NewSet(e.ca.Bundle(), e.upCA.Bundle())
	st := tlsconf.NewStore(e.ca, bundles, tlsconf.StoreOptions{JWT: keys})
	e.t.Cleanup(func() { st.Close() })
	return st
}

func (e *env) jwtKeys(name string, ttl, rotation time.Duration) *tlsconf.JWTKeys {
	e.t.Helper()
	k, err := tlsconf.LoadOrCreateJWTKeys(tlsconf.JWTKeyOptions{TrustDomain: nodeTD,
		StateDir: filepath.Join(e.dir, name), TTL: ttl, Rotation: rotation})
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

// startJWTProxy serves the env's routes plus extra through src, every
// caller allowed, on sockets of its own.
func (e *env) startJWTProxy(name string, src tlsconf.Source, extra ...proxy.Route) *limProxy {
	e.t.Helper()
	lp := &limProxy{
		sock: filepath.Join(e.dir, name+".sock"), rawSock: filepath.Join(e.dir, name+"-raw.sock"),
		audit: &logtest.Buffer{}, log: &logtest.Buffer{},
	}
	var err error
	lp.srv, err = proxy.New(e.resolver, src, e.statePlus(extra...), proxy.Options{
		Audit: zerolog.New(lp.audit), Logger: zerolog.New(lp.log)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.serve(lp.srv, lp.sock, lp.rawSock)
	return lp
}

// get sends GET url through c with the given fields and returns the
// status and body.
func get(t *testing.T, c *http.Client, url string, fields map[string]string, chunked bool) (int, string) {
	t.Helper()
	var req *http.Request
	if chunked {
		// An unknown length: the fast path hands it to net/http.
		req, _ = http.NewRequest(http.MethodPost, url, io.MultiReader(strings.NewReader("body")))
		req.ContentLength = -1
	} else {
		req, _ = http.NewRequest(http.MethodGet, url, nil)
	}
	for k, v := range fields {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// jwtPaths are the client legs and procmesh paths a request may take:
// the fast path, net/http (a chunked body is handed off) and h2c.
var jwtPaths = []struct {
	name    string
	client  func(sock string) *http.Client
	chunked bool
}{
	{"fast-path", unixClient, false},
	{"net/http", unixClient, true},
	{"h2c", h2cClient, false},
}

// TestThreat_I1_JWTSVIDPerProcess: two processes, different binaries and
// uids, call one token-authorised upstream through procmesh at once: each
// request carries its own caller's JWT-SVID, which the upstream validates
// with go-spiffe against procmesh's JWT bundle; the token's subject is
// the identity the mTLS certificate names, on HTTP/1.1 and h2c.
func TestThreat_I1_JWTSVIDPerProcess(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	a, b := e.client("a", ""), e.client("b", "salt-b")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a), "unix:uid:0"}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b), "unix:uid:1000"}},
	)
	store := e.jwtStore(e.jwtKeys("jwt", 0, 0))
	up := e.startJWTUpstream("Authorization", store.JWTBundles())
	lp := e.startJWTProxy("jwt", store, jwtRoute("sts", up))
	var wg sync.WaitGroup
	for name, c := range map[string]struct {
		bin string
		uid int
	}{"a": {a, 0}, "b": {b, 1000}} {
		for _, mode := range []string{"origin", "h2c"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs, err := e.run(c.bin, c.uid, mode, "PM_SOCK="+lp.sock, "PM_URL=http://sts.test/who/"+name, "PM_N=10")
				if err != nil {
					t.Errorf("client %s: %v", name, err)
					return
				}
				for _, r := range rs {
					if r.Status != http.StatusOK {
						t.Errorf("client %s (%s): %d %s %s", name, mode, r.Status, r.Err, r.Body)
					}
				}
			}()
		}
	}
	wg.Wait()
	recs := up.records()
	if len(recs) != 40 {
		t.Fatalf("upstream saw %d requests, want 40", len(recs))
	}
	for _, s := range recs {
		want := "spiffe://example.org/" + strings.TrimPrefix(s.Path, "/who/")
		if s.Err != "" || s.Subject != want || s.MTLS != want {
			t.Errorf("request %s: token subject %q (err %q), certificate %s; want %s for both", s.Path, s.Subject, s.Err, s.MTLS, want)
		}
	}
}

// TestThreat_P9_JWTSVIDNotSmuggled: a caller sends its own token field,
// here a valid JWT-SVID of another identity (as if stolen), on every path:
// the upstream never receives it, only the caller's own token, in exactly
// one field; for a route whose field is not Authorization, the bare token;
// to HTTP/1.1 and HTTP/2 upstreams. Nor does policy see it: a rule that
// allows a route only to requests carrying the stolen token in that
// route's field never matches.
func TestThreat_P9_JWTSVIDNotSmuggled(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	store := e.jwtStore(e.jwtKeys("jwt", 0, 0))
	stolen, err := store.JWTSVID(t.Context(), tlsconf.Workload{ID: idB}, []string{stsAudience})
	if err != nil {
		t.Fatal(err)
	}
	bearer := e.startJWTUpstream("Authorization", store.JWTBundles())
	bare := e.startJWTUpstream("X-Spiffe-Jwt", store.JWTBundles())
	// sts-h2: the fast path reaches an HTTP/2 upstream through its
	// transport, not its own HTTP/1.1 writer.
	h2 := jwtRoute("sts-h2", bearer)
	h2.Protocol = proxy.ProtocolHTTP2
	routes := []proxy.Route{jwtRoute("sts", bearer), jwtRoute("sts-bare", bare), h2, jwtRoute("sts-gated", bearer)}
	lp := e.startJWTProxy("jwt", store, routes...)
	pol, err := policy.New(false, []policy.Rule{
		{Name: "callers", From: []spiffeid.ID{idA}, To: []string{"sts", "sts-bare", "sts-h2"}},
		{Name: "forged-token", From: []spiffeid.ID{idA}, To: []string{"sts-gated"},
			Headers: map[string]string{"Authorization": "Bearer " + stolen.Marshal()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lp.srv.SetState(e.statePolicy(pol, routes...))
	for _, p := range jwtPaths {
		// The forged field is gone before policy decides.
		before := len(bearer.records())
		forged := map[string]string{"Authorization": "Bearer " + stolen.Marshal()}
		if status, body := get(t, p.client(lp.sock), "http://sts-gated.test/p9", forged, p.chunked); status != http.StatusForbidden ||
			!strings.Contains(body, "denied by policy") {
			t.Errorf("%s to sts-gated.test with the stolen token: %d %q; want 403 denied by policy (policy saw the forged field)", p.name, status, body)
		}
		if n := len(bearer.records()) - before; n != 0 {
			t.Errorf("%s to sts-gated.test: the upstream received %d requests", p.name, n)
		}
	}
	for _, p := range jwtPaths {
		for host, u := range map[string]*jwtUpstream{"sts.test": bearer, "sts-bare.test": bare, "sts-h2.test": bearer} {
			forged := map[string]string{u.header: "Bearer " + stolen.Marshal()}
			if u.header != "Authorization" {
				forged[u.header] = stolen.Marshal()
			}
			before := len(u.records())
			status, body := get(t, p.client(lp.sock), "http://"+host+"/p9", forged, p.chunked)
			if status != http.StatusOK {
				t.Errorf("%s to %s: %d %s", p.name, host, status, body)
				continue
			}
			recs := u.records()
			if len(recs) != before+1 {
				t.Fatalf("%s to %s: upstream saw %d requests, want 1", p.name, host, len(recs)-before)
			}
			s := recs[len(recs)-1]
			if host == "sts-h2.test" && s.Proto != "HTTP/2.0" {
				t.Errorf("%s to %s: upstream got %s", p.name, host, s.Proto)
			}
			if s.Fields != 1 || s.Subject != idA.String() || s.Token == stolen.Marshal() {
				t.Errorf("%s to %s: upstream got %d fields, subject %q, the smuggled token: %v", p.name, host, s.Fields, s.Subject, s.Token == stolen.Marshal())
			}
		}
	}
	// The forged field does not reach policy either: it was gone before.
	if strings.Contains(lp.audit.String(), stolen.Marshal()) || strings.Contains(lp.log.String(), stolen.Marshal()) {
		t.Error("the smuggled token is in procmesh's logs")
	}
}

// TestThreat_F3_JWTSVIDRequiredFailsClosed: a route with jwt_svid makes a
// token a requirement. When none can be had (here the identity source has
// no JWT signing key), the request is answered 503 naming the reason and
// never reaches the upstream, on every path; CONNECT to such a route,
// which could carry no token, is refused, also when a token could be had.
func TestThreat_F3_JWTSVIDRequiredFailsClosed(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	store := e.jwtStore(nil)
	up := e.startJWTUpstream("Authorization", store.JWTBundles())
	lp := e.startJWTProxy("jwt", store, jwtRoute("sts", up))
	for _, p := range jwtPaths {
		status, body := get(t, p.client(lp.sock), "http://sts.test/f3", map[string]string{"Authorization": "Bearer x"}, p.chunked)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `route "sts" needs a JWT-SVID for spiffe://example.org/a`) {
			t.Errorf("%s: %d %q, want 503 naming the route and identity", p.name, status, body)
		}
	}
	resp, _ := rawExchange(t, lp.sock, "CONNECT sts.test:443 HTTP/1.1\r\nHost: sts.test:443\r\n\r\n", 2*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 403") || !strings.Contains(resp, "a tunnel cannot carry") {
		t.Errorf("CONNECT to a jwt_svid route: %q", resp)
	}
	// With a signing key the token could be had, but the tunnel would
	// not carry it.
	keyed := e.startJWTProxy("jwt-keyed", e.jwtStore(e.jwtKeys("jwt", 0, 0)), jwtRoute("sts", up))
	resp, _ = rawExchange(t, keyed.sock, "CONNECT sts.test:443 HTTP/1.1\r\nHost: sts.test:443\r\n\r\n", 2*time.Second)
	if !strings.HasPrefix(resp, "HTTP/1.1 403") || !strings.Contains(resp, "a tunnel cannot carry") {
		t.Errorf("CONNECT to a jwt_svid route whose token could be had: %q", resp)
	}
	if n := len(up.records()); n != 0 {
		t.Fatalf("the upstream received %d requests without a token", n)
	}
	if l := lp.audit.Lines(`"route":"sts"`, `"status":503`, `no JWT-SVID`); len(l) != len(jwtPaths) {
		t.Errorf("want %d audit lines with status 503 and the reason, got %d:\n%s", len(jwtPaths), len(l), lp.audit.String())
	}
}

// TestJWTSVIDAuditNamesJTIHash: each audit line of a request that carried
// a token names the sha256 of its jti (6 bytes in hex), never the token;
// no token is in any log.
func TestJWTSVIDAuditNamesJTIHash(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	store := e.jwtStore(e.jwtKeys("jwt", 0, 0))
	up := e.startJWTUpstream("Authorization", store.JWTBundles())
	lp := e.startJWTProxy("jwt", store, jwtRoute("sts", up))
	for _, p := range jwtPaths {
		if status, body := get(t, p.client(lp.sock), "http://sts.test/audit", nil, p.chunked); status != http.StatusOK {
			t.Fatalf("%s: %d %s", p.name, status, body)
		}
	}
	recs := up.records()
	if len(recs) != len(jwtPaths) {
		t.Fatalf("upstream saw %d requests", len(recs))
	}
	for _, s := range recs {
		sum := sha256.Sum256([]byte(s.JTI))
		if l := lp.audit.Lines(`"route":"sts"`, `"jwt_jti_sha256":"`+hex.EncodeToString(sum[:6])+`"`); len(l) != len(jwtPaths) {
			t.Errorf("want %d audit lines naming the jti hash (one cached token), got %d:\n%s", len(jwtPaths), len(l), lp.audit.String())
		}
		for _, part := range strings.Split(s.Token, ".") {
			if strings.Contains(lp.audit.String(), part) || strings.Contains(lp.log.String(), part) {
				t.Fatalf("a part of the token is in procmesh's logs")
			}
		}
		if strings.Contains(lp.audit.String(), s.JTI) {
			t.Error("the jti itself is in the audit log")
		}
	}
}

// TestThreat_F2_JWTKeyRotationUnderLoad: with a 2s token lifetime and a
// key rotation every second, callers keep sending through several
// rotations while the upstream validates against a JWT bundle it
// refreshes only every 200ms, as a validator caching the JWKS does: not
// one request fails. The next key is in the bundle before it signs, and
// the old one stays while the tokens it signed are valid.
func TestThreat_F2_JWTKeyRotationUnderLoad(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	keys := e.jwtKeys("jwt", 2*time.Second, time.Second)
	store := e.jwtStore(keys)
	up := e.startJWTUpstream("Authorization", store.JWTBundles())
	lp := e.startJWTProxy("jwt", store, jwtRoute("sts", up))
	stop := make(chan struct{})
	var refresher sync.WaitGroup
	refresher.Add(1)
	go func() {
		defer refresher.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				up.setBundles(store.JWTBundles())
			}
		}
	}()
	kids := func() int {
		seen := map[string]bool{}
		for _, s := range up.records() {
			if s.Token == "" {
				continue
			}
			h, _, _ := strings.Cut(s.Token, ".")
			seen[h] = true // the header names the kid
		}
		return len(seen)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := 0; i < 4; i++ {
		p := jwtPaths[i%len(jwtPaths)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.client(lp.sock)
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, body := get(t, c, "http://sts.test/f2", nil, p.chunked)
				if status != http.StatusOK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %s", p.name, status, body))
					mu.Unlock()
				}
			}
		}()
	}
	// Until tokens signed by four keys have been seen.
	ok := eventually(30*time.Second, func() bool { return kids() >= 4 })
	close(stop)
	wg.Wait()
	refresher.Wait()
	if !ok {
		t.Fatalf("tokens of %d keys seen; the keys did not rotate", kids())
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during rotation; first: %s", len(failures), len(up.records()), failures[0])
	}
	t.Logf("%d requests, tokens of %d keys", len(up.records()), kids())
}
