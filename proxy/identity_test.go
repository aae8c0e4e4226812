package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/registry"
)

var (
	idA = spiffeid.RequireFromString("spiffe://example.org/a")
	idB = spiffeid.RequireFromString("spiffe://example.org/b")
)

// echoReply is what the test upstream answers: the client SPIFFE ID it
// verified on this TLS connection.
type echoReply struct {
	SPIFFEID string `json:"spiffe_id"`
	Path     string `json:"path"`
	Host     string `json:"host"`
	Conn     uint64 `json:"conn"`
	Resumed  bool   `json:"resumed"`
}

func decodeReply(t *testing.T, r clientResult) echoReply {
	t.Helper()
	if r.Err != "" || r.Status != http.StatusOK {
		t.Fatalf("request failed: status %d err %q body %q", r.Status, r.Err, r.Body)
	}
	var rep echoReply
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
		t.Fatalf("upstream reply %q: %v", r.Body, err)
	}
	return rep
}

// twoClients builds binaries a and b and an env where a is spiffe://.../a
// and b is spiffe://.../b, told apart only by executable.
func twoClients(t *testing.T) (e *env, a, b string) {
	t.Helper()
	return twoClientsWith(t, envOptions{defaultAllow: true})
}

func twoClientsWith(t *testing.T, o envOptions) (e *env, a, b string) {
	t.Helper()
	e = newEnv(t, o)
	a, b = e.client("a", ""), e.client("b", "salt-b")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b)}},
	)
	return e, a, b
}

// runConcurrently runs each client's requests at the same time and returns
// every reply per client.
func runConcurrently(t *testing.T, e *env, mode string, n int, clients map[string]int, bins map[string]string) map[string][]echoReply {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := make(map[string][]echoReply)
	for name, uid := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := e.run(bins[name], uid, mode, "PM_URL=http://echo.test/who/"+name, "PM_N="+strconv.Itoa(n))
			if err != nil {
				t.Errorf("client %s: %v", name, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				out[name] = append(out[name], decodeReply(t, r))
			}
		}()
	}
	wg.Wait()
	return out
}

// TestThreat_I1_CoLocatedProcesses: same uid, same cgroup, different
// executables: each arrives upstream as its own SPIFFE ID.
func TestThreat_I1_CoLocatedProcesses(t *testing.T) {
	e, a, b := twoClients(t)
	got := runConcurrently(t, e, "origin", 20, map[string]int{"a": -1, "b": -1}, map[string]string{"a": a, "b": b})
	want := map[string]string{"a": idA.String(), "b": idB.String()}
	for name, replies := range got {
		if len(replies) != 20 {
			t.Fatalf("client %s got %d replies, want 20", name, len(replies))
		}
		for _, r := range replies {
			if r.SPIFFEID != want[name] {
				t.Fatalf("client %s reached the upstream as %s, want %s", name, r.SPIFFEID, want[name])
			}
		}
	}
}

// TestThreat_I5_PoolPerIdentity: interleaved callers over pooled upstream
// connections; the upstream's per-request log shows no connection ever
// carried two identities, and every request carried its caller's identity.
// With preconnections (routes[].preconnect), whose handshakes begin before
// anyone needs them, the same holds.
func TestThreat_I5_PoolPerIdentity(t *testing.T) {
	for _, pre := range []int{0, 2} {
		t.Run(fmt.Sprintf("preconnect=%d", pre), func(t *testing.T) { testPoolPerIdentity(t, pre) })
	}
}

func testPoolPerIdentity(t *testing.T, preconnect int) {
	e, a, b := twoClientsWith(t, envOptions{defaultAllow: true, preconnect: preconnect})
	if preconnect > 0 {
		// a's first connection starts the preconnections; b's takes one.
		if _, err := e.run(a, -1, "origin", "PM_URL=http://echo.test/who/a"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for e.srv.Stats().Preconnects["echo"].Ready < preconnect {
			if time.Now().After(deadline) {
				t.Fatalf("preconnections: %+v, want %d ready", e.srv.Stats().Preconnects["echo"], preconnect)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	runConcurrently(t, e, "origin", 30, map[string]int{"a": -1, "b": -1}, map[string]string{"a": a, "b": b})
	runConcurrently(t, e, "absolute", 30, map[string]int{"a": -1, "b": -1}, map[string]string{"a": a, "b": b})
	recs := e.echo.Records()
	if want := 120 + min(preconnect, 1); len(recs) != want {
		t.Fatalf("upstream saw %d requests, want %d", len(recs), want)
	}
	idsPerConn := make(map[uint64]map[string]bool)
	for _, r := range recs {
		if idsPerConn[r.ConnID] == nil {
			idsPerConn[r.ConnID] = make(map[string]bool)
		}
		idsPerConn[r.ConnID][fmt.Sprint(r.SPIFFEID)] = true
		caller := strings.TrimPrefix(r.Path, "/who/")
		if want := "spiffe://example.org/" + caller; fmt.Sprint(r.SPIFFEID) != want {
			t.Errorf("request from %s arrived as %s", caller, r.SPIFFEID)
		}
	}
	for conn, ids := range idsPerConn {
		if len(ids) != 1 {
			t.Errorf("upstream connection %d carried identities %v", conn, ids)
		}
	}
	if len(idsPerConn) < 2 || len(idsPerConn) > 4 {
		t.Errorf("upstream saw %d connections; want one pool per identity reused across client connections (2..4)", len(idsPerConn))
	}
	if used := e.srv.Stats().Preconnects["echo"].Used; preconnect > 0 && used == 0 {
		t.Errorf("no preconnection was used: the test did not exercise them")
	}
}

// TestThreat_I6_SessionCachePerIdentity: every CONNECT tunnel is a new
// upstream TLS connection, and later ones resume their identity's session.
// A resumed TLS 1.3 handshake sends no client certificate, so a shared
// session cache would hand b's tunnel a's identity.
func TestThreat_I6_SessionCachePerIdentity(t *testing.T) {
	e, a, b := twoClients(t)
	for i := 0; i < 3; i++ {
		for name, bin := range map[string]string{"a": a, "b": b} {
			rs, err := e.run(bin, -1, "connect", "PM_URL=http://echo.test/who/"+name)
			if err != nil {
				t.Fatal(err)
			}
			if rep := decodeReply(t, rs[0]); rep.SPIFFEID != "spiffe://example.org/"+name {
				t.Fatalf("tunnel %d of %s arrived as %s", i, name, rep.SPIFFEID)
			}
		}
	}
	resumed := 0
	for _, r := range e.echo.Records() {
		if r.Resumed {
			resumed++
		}
	}
	if resumed == 0 {
		t.Fatal("no tunnel resumed a TLS session: the test would not see sessions crossing identities")
	}
}

// TestOtherUID: a client run as uid 1000 is attested with that uid and gets
// the entry that names it.
func TestOtherUID(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	a := e.client("a", "")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a), "unix:uid:0"}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(a), "unix:uid:1000"}},
	)
	for uid, want := range map[int]spiffeid.ID{0: idA, 1000: idB} {
		rs, err := e.run(a, uid, "origin", "PM_URL=http://echo.test/uid")
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeReply(t, rs[0]).SPIFFEID; got != want.String() {
			t.Errorf("uid %d arrived as %s, want %s", uid, got, want)
		}
	}
	if l := e.audit.Lines(`"uid":1000`, `"spiffe_id":"spiffe://example.org/b"`); len(l) != 1 {
		t.Errorf("want one audit line naming uid 1000 as b, got %d:\n%s", len(l), e.audit.String())
	}
}
