package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/registry"
)

// oneClient builds binary a as spiffe://example.org/a in an env with the
// given policy.
func oneClient(t *testing.T, o envOptions) (*env, string) {
	t.Helper()
	e := newEnv(t, o)
	a := e.client("a", "")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	return e, a
}

func TestRequestForms(t *testing.T) {
	e, a := oneClient(t, envOptions{defaultAllow: true})
	for _, mode := range []string{"origin", "absolute", "connect"} {
		t.Run(mode, func(t *testing.T) {
			rs, err := e.run(a, -1, mode, "PM_URL=http://echo.test/form/"+mode, "PM_N=3")
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 3 {
				t.Fatalf("got %d replies, want 3", len(rs))
			}
			for _, r := range rs {
				rep := decodeReply(t, r)
				if rep.SPIFFEID != idA.String() || rep.Path != "/form/"+mode || rep.Host != "echo.test" {
					t.Fatalf("upstream saw %+v", rep)
				}
			}
		})
	}
	t.Run("raw", func(t *testing.T) {
		rs, err := e.run(a, -1, "raw", "PM_SOCK="+e.rawSock, "PM_PAYLOAD=hello over a raw socket")
		if err != nil {
			t.Fatal(err)
		}
		want := "spiffe_id=" + idA.String() + "\nhello over a raw socket"
		if rs[0].Body != want {
			t.Fatalf("raw socket answered %q, want %q", rs[0].Body, want)
		}
	})
	for _, kind := range []string{`"event":"request"`, `"event":"connection"`} {
		if len(e.audit.Lines(kind, `"spiffe_id":"spiffe://example.org/a"`, `"decision":"allow"`)) == 0 {
			t.Errorf("no allow audit line of %s:\n%s", kind, e.audit.String())
		}
	}
}

// TestThreat_I7_UnknownProcessRefused: a process matching no entry gets a
// 403 that lists its selectors, and nothing reaches the upstream.
func TestThreat_I7_UnknownProcessRefused(t *testing.T) {
	e, _ := oneClient(t, envOptions{defaultAllow: true})
	stranger := e.client("stranger", "other")
	rs, err := e.run(stranger, 1000, "origin", "PM_URL=http://echo.test/x")
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", rs[0].Status)
	}
	for _, want := range []string{"matches no registration entry", pathSel(stranger), "unix:uid:1000"} {
		if !strings.Contains(rs[0].Body, want) {
			t.Errorf("refusal body lacks %q:\n%s", want, rs[0].Body)
		}
	}
	// No entry pins a sha256, so the stranger's executable is not read (F12).
	if strings.Contains(rs[0].Body, "unix:sha256:") {
		t.Errorf("refusal body lists a sha256 though no entry could use one:\n%s", rs[0].Body)
	}
	rs, err = e.run(stranger, 1000, "raw", "PM_SOCK="+e.rawSock, "PM_PAYLOAD=secret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rs[0].Body, "matches no registration entry") || strings.Contains(rs[0].Body, "secret") {
		t.Errorf("raw refusal answered %q", rs[0].Body)
	}
	if n := len(e.echo.Records()) + len(e.raw.Records()); n != 0 {
		t.Fatalf("upstream saw %d requests from an unregistered process", n)
	}
	if len(e.audit.Lines(`"refused"`, `"selectors"`)) != 2 {
		t.Errorf("want two refusal audit lines with selectors:\n%s", e.audit.String())
	}
}

// TestThreat_P4_NoOpenProxy: destinations no route names are refused
// whatever form the request takes.
func TestThreat_P4_NoOpenProxy(t *testing.T) {
	e, a := oneClient(t, envOptions{defaultAllow: true})
	for _, c := range []struct{ mode, url string }{
		{"absolute", "http://169.254.169.254/latest/meta-data/"},
		{"absolute", "http://127.0.0.1:" + strings.Split(e.echo.Addr(), ":")[1] + "/"},
		{"origin", "http://localhost/"},
		{"connect", "http://" + e.echo.Addr() + "/"},
		{"connect", "http://169.254.169.254:80/"},
	} {
		rs, err := e.run(a, -1, c.mode, "PM_URL="+c.url)
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Status != http.StatusForbidden || !strings.Contains(rs[0].Body, "no route for host") {
			t.Errorf("%s %s: status %d body %q, want 403 no route", c.mode, c.url, rs[0].Status, rs[0].Body)
		}
	}
	if n := len(e.echo.Records()); n != 0 {
		t.Fatalf("upstream saw %d requests", n)
	}
}

// TestPolicyDenies: default deny with no rule for the caller refuses HTTP
// requests, tunnels and raw connections, and says why.
func TestPolicyDenies(t *testing.T) {
	e, a := oneClient(t, envOptions{rules: []policy.Rule{{Name: "b-only", From: []spiffeid.ID{idB}, To: []string{"echo"}}}})
	for _, mode := range []string{"origin", "connect"} {
		rs, err := e.run(a, -1, mode, "PM_URL=http://echo.test/")
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Status != http.StatusForbidden || !strings.Contains(rs[0].Body, "denied by policy") {
			t.Errorf("%s: status %d body %q", mode, rs[0].Status, rs[0].Body)
		}
	}
	rs, err := e.run(a, -1, "raw", "PM_SOCK="+e.rawSock, "PM_PAYLOAD=x")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rs[0].Body, "denied by policy") {
		t.Errorf("raw: %q", rs[0].Body)
	}
	if n := len(e.echo.Records()) + len(e.raw.Records()); n != 0 {
		t.Fatalf("upstream saw %d requests", n)
	}
	if len(e.audit.Lines(`"decision":"deny"`, `"spiffe_id":"spiffe://example.org/a"`)) != 3 {
		t.Errorf("want 3 deny audit lines:\n%s", e.audit.String())
	}
}
