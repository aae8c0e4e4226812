//go:build linux

package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/spire"
)

// With SPIRE as the identity source, procmesh attaches a JWT-SVID SPIRE
// issued for the calling process by its PID (Delegated Identity API
// FetchJWTSVIDs): two processes, different binaries and uids, each
// arrive with a token naming the identity SPIRE gives them, which the
// upstream validates against SPIRE's JWT bundle.
func TestSPIRE_JWTSVIDPerProcess(t *testing.T) {
	e, sp, src := newSPIREEnv(t, envOptions{}, spire.Options{})
	a, b := e.client("a", "a"), e.client("b", "b")
	sp.CreateEntry(spireA.String(), "unix:uid:1000", "unix:path:"+a)
	sp.CreateEntry(spireB.String(), "unix:uid:1001", "unix:path:"+b)
	sp.WaitEntry(spireA.String(), "unix:uid:1000", "unix:path:"+a)
	sp.WaitEntry(spireB.String(), "unix:uid:1001", "unix:path:"+b)
	waitUntil(t, "SPIRE's JWT bundle", func() bool {
		_, ok := src.JWTBundles().Get(spiffeid.RequireTrustDomainFromString("example.org"))
		return ok
	})
	up := e.startJWTUpstreamFor("Authorization", src.JWTBundles(), src.Bundles())
	e.srv.SetState(e.statePlus(jwtRoute("sts", up)))
	for _, c := range []struct {
		name string
		bin  string
		uid  int
	}{{"a", a, 1000}, {"b", b, 1001}} {
		// A token of the caller's own making is replaced.
		rs, err := e.run(c.bin, c.uid, "origin", "PM_URL=http://sts.test/who/"+c.name, "PM_N=3", "PM_AUTH=Bearer forged")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Status != http.StatusOK {
				t.Fatalf("%s: %d %s %s", c.name, r.Status, r.Err, r.Body)
			}
		}
	}
	recs := up.records()
	if len(recs) != 6 {
		t.Fatalf("upstream saw %d requests, want 6", len(recs))
	}
	for _, s := range recs {
		want := "spiffe://example.org/app/" + strings.TrimPrefix(s.Path, "/who/")
		if s.Err != "" || s.Subject != want || s.MTLS != want {
			t.Errorf("request %s: token subject %q (err %q), certificate %s; want %s", s.Path, s.Subject, s.Err, s.MTLS, want)
		}
		if strings.Contains(e.audit.String(), s.Token) {
			t.Error("a token is in procmesh's logs")
		}
	}
	if l := e.audit.Lines(`"route":"sts"`, `"jwt_jti_sha256":"`); len(l) != 6 {
		t.Errorf("want 6 audit lines naming a jti hash, got %d", len(l))
	}
}
