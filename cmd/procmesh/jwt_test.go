package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/procmesh/procmesh/echo"
)

// A route's jwt_svid, from the config file and added by a reload: the
// running node attaches the caller's JWT-SVID signed with the key under
// state_dir (created 0600), which validates against the node's JWT
// bundle; the route without it sends none.
func TestJWTSVIDRouteFromConfig(t *testing.T) {
	e := newReloadEnv(t)
	send := func(host string) echo.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/jwt", nil)
		req.Header.Set("Authorization", "Bearer forged")
		resp, err := e.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", host, resp.StatusCode, b)
		}
		var r echo.Response
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got := send("echo.test").Headers["Authorization"]; len(got) != 1 || got[0] != "Bearer forged" {
		t.Fatalf("a route without jwt_svid changed Authorization: %q", got)
	}
	e.write(strings.Replace(e.config(true, true), "server_id: spiffe://upstream.test/echo}",
		"server_id: spiffe://upstream.test/echo, jwt_svid: {audience: [https://sts.example]}}", 1))
	if err := e.rn.reloader.reload("test"); err != nil {
		t.Fatal(err)
	}
	got := send("echo.test").Headers["Authorization"]
	if len(got) != 1 || !strings.HasPrefix(got[0], "Bearer ") || got[0] == "Bearer forged" {
		t.Fatalf("after the reload, the upstream got Authorization %q", got)
	}
	sv, err := jwtsvid.ParseAndValidate(strings.TrimPrefix(got[0], "Bearer "), e.rn.n.store.JWTBundles(), []string{"https://sts.example"})
	if err != nil {
		t.Fatal(err)
	}
	if sv.ID.String() != "spiffe://example.org/tests" {
		t.Fatalf("token for %s", sv.ID)
	}
	if got := send("echo2.test").Headers["Authorization"]; len(got) != 1 || got[0] != "Bearer forged" {
		t.Fatalf("echo2, without jwt_svid: %q", got)
	}
	fi, err := os.Stat(filepath.Join(e.dir, "state", "jwt-keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("jwt-keys.json has mode %04o, want 0600", fi.Mode().Perm())
	}
}
