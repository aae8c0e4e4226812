package upstream

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/tlsconf"
)

func workload(id string) tlsconf.Workload {
	return tlsconf.Workload{ID: spiffeid.RequireFromString("spiffe://example.org/" + id)}
}

// who sends one request on up and returns what the upstream saw of it.
func who(t *testing.T, up *Conn) echo.Response {
	t.Helper()
	bw := up.StartRequest()
	bw.WriteString("GET /who HTTP/1.1\r\nHost: echo.test\r\n\r\n")
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	res, err := up.ReadResponse(&http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var rep echo.Response
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("upstream reply %q: %v", body, err)
	}
	return rep
}

// readyPreconnections waits until route has n preconnections stopped at
// the client certificate.
func readyPreconnections(t *testing.T, ps *Pools, route string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps.mu.Lock()
		pc := ps.pre[route]
		ps.mu.Unlock()
		got := -1
		if pc != nil {
			pc.mu.Lock()
			got = len(pc.ready)
			pc.mu.Unlock()
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("route %s: %d preconnections ready, want %d", route, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// preconnectEnv is an env with an http1 route keeping one preconnection,
// and the route's first connection, a cold dial of workload a.
func preconnectEnv(t *testing.T) (*poolsEnv, *Route, *Conn) {
	t.Helper()
	pe := newPoolsEnv(t)
	route := pe.route(ProtocolHTTP1)
	route.Preconnect = 1
	up, _, err := pe.ps.Get(workload("a"), route).H1().Get(false)
	if err != nil {
		t.Fatal(err)
	}
	return pe, route, up
}

// TestThreat_I5_PreconnectionServesOneIdentity: a preconnection is a
// handshake begun before procmesh knew who would use it. Whoever takes
// it, the upstream sees that identity's certificate and nobody else's,
// the handshake offered no identity's session, and the session the
// upstream hands out after it goes to the taker's cache alone.
func TestThreat_I5_PreconnectionServesOneIdentity(t *testing.T) {
	pe := newPoolsEnv(t)
	route := pe.route(ProtocolHTTP1)
	route.Preconnect = 1
	a, b, c := workload("a"), workload("b"), workload("c")

	// a's first connection is a cold dial; it starts a preconnection.
	upA, _, err := pe.ps.Get(a, route).H1().Get(false)
	if err != nil {
		t.Fatal(err)
	}
	repA := who(t, upA)
	if repA.SPIFFEID != a.ID.String() {
		t.Fatalf("a arrived as %s", repA.SPIFFEID)
	}
	upA.Close()
	seen := map[uint64]string{repA.Conn: a.ID.String()}
	used := func() uint64 { return pe.ps.Preconnects()[route.Name].Used }

	// b, then c, each take the preconnection ready at that moment; a
	// second connection of a takes one too, though a holds a session.
	for i, w := range []tlsconf.Workload{b, c, a} {
		readyPreconnections(t, pe.ps, route.Name, 1)
		p := pe.ps.Get(w, route)
		up, _, err := p.H1().Get(false)
		if err != nil {
			t.Fatal(err)
		}
		rep := who(t, up)
		if got := used(); got != uint64(i+1) {
			t.Fatalf("%s: %d preconnections used, want %d", w.ID, got, i+1)
		}
		if rep.SPIFFEID != w.ID.String() {
			t.Fatalf("%s's preconnection arrived upstream as %s", w.ID, rep.SPIFFEID)
		}
		if rep.Resumed {
			t.Fatalf("%s's preconnection resumed a session: its hello offered one", w.ID)
		}
		if prev, ok := seen[rep.Conn]; ok {
			t.Fatalf("upstream connection %d carried %s and then %s", rep.Conn, prev, w.ID)
		}
		seen[rep.Conn] = w.ID.String()
		// The upstream's ticket, read with the response, is the taker's.
		if _, ok := p.tls.ClientSessionCache.Get(route.Host); !ok {
			t.Fatalf("%s's cache holds no session after its preconnection's handshake", w.ID)
		}
		up.Close()
	}
}

// TestPreconnectionReplacedAfterFirstExchange: the route's next
// preconnection starts when the connection that took one has served its
// first exchange, not while its handshake and request are under way,
// where the new handshake would take CPU from both ends.
func TestPreconnectionReplacedAfterFirstExchange(t *testing.T) {
	pe, route, upA := preconnectEnv(t)
	pc := pe.ps.preconnectorOf(route.Name)
	if n := pc.underWay(); n != 0 {
		t.Fatalf("%d preconnections under way during the first connection's exchange, want 0", n)
	}
	who(t, upA)
	pe.ps.Get(workload("a"), route).H1().Put(upA)
	readyPreconnections(t, pe.ps, route.Name, 1)

	p := pe.ps.Get(workload("b"), route)
	upB, _, err := p.H1().Get(false)
	if err != nil {
		t.Fatal(err)
	}
	if got := pe.ps.Preconnects()[route.Name].Used; got != 1 {
		t.Fatalf("b: %d preconnections used, want 1", got)
	}
	if n := pc.underWay(); n != 0 {
		t.Fatalf("%d preconnections under way while b's taken one serves its first exchange, want 0", n)
	}
	if rep := who(t, upB); rep.SPIFFEID != workload("b").ID.String() {
		t.Fatalf("b arrived as %s", rep.SPIFFEID)
	}
	p.H1().Put(upB)
	readyPreconnections(t, pe.ps, route.Name, 1)
}

// underWay returns how many preconnections are ready or being made.
func (pc *preconnector) underWay() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.ready) + pc.pending
}

// preconnectorOf returns route's preconnector, nil if it has none.
func (ps *Pools) preconnectorOf(route string) *preconnector {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.pre[route]
}

// TestPreconnectionExpires: a preconnection nobody takes is closed after
// PreconnectTTL and not replaced, so a route without new identities
// keeps no connection open for them.
func TestPreconnectionExpires(t *testing.T) {
	pe := newPoolsEnv(t)
	before := stableGoroutines()
	ps := NewPools(pe.ps.src, Options{PreconnectTTL: 200 * time.Millisecond}, zerolog.Nop())
	route := pe.route(ProtocolHTTP1)
	route.Preconnect = 2
	up, _, err := ps.Get(pe.w, route).H1().Get(false)
	if err != nil {
		t.Fatal(err)
	}
	if rep := who(t, up); rep.SPIFFEID != pe.w.ID.String() {
		t.Fatalf("arrived as %s", rep.SPIFFEID)
	}
	ps.Get(pe.w, route).H1().Put(up)
	readyPreconnections(t, ps, route.Name, 2)
	readyPreconnections(t, ps, route.Name, 0)
	time.Sleep(300 * time.Millisecond)
	st := ps.Preconnects()[route.Name]
	if st.Expired != 2 || st.Used != 0 {
		t.Fatalf("preconnections %+v, want 2 expired, none used", st)
	}
	if d := ps.Dials()[route.Name]; d != 3 {
		t.Fatalf("%d dials; want 3 (one cold, two preconnections, no replacement)", d)
	}
	ps.CloseAll()
	if !waitGoroutines(before) {
		t.Fatalf("goroutines: %d before, %d after closing", before, runtime.NumGoroutine())
	}
}

// TestPreconnectionsEndWithTheRoute: retiring the route's pools closes
// its preconnections.
func TestPreconnectionsEndWithTheRoute(t *testing.T) {
	pe, route, up := preconnectEnv(t)
	up.Close()
	readyPreconnections(t, pe.ps, route.Name, 1)
	pc := pe.ps.preconnectorOf(route.Name)
	pe.ps.Retain(func(spiffeid.ID, *Route) bool { return false })
	pc.mu.Lock()
	closed, ready := pc.closed, len(pc.ready)
	pc.mu.Unlock()
	if !closed || ready != 0 {
		t.Fatalf("after the route's pools were retired: closed %v, %d ready", closed, ready)
	}
	if st := pe.ps.Preconnects()[route.Name]; st.Used != 0 {
		t.Fatalf("preconnections %+v", st)
	}
}

// TestPreconnectionLostFallsBackToADial: a preconnection whose connection
// died while it waited (an upstream that gave up on the handshake) costs
// its taker a new dial, not a failed request.
func TestPreconnectionLostFallsBackToADial(t *testing.T) {
	pe, route, upA := preconnectEnv(t)
	upA.Close()
	readyPreconnections(t, pe.ps, route.Name, 1)
	pc := pe.ps.preconnectorOf(route.Name)
	pc.mu.Lock()
	pc.ready[0].tc.NetConn().Close()
	pc.mu.Unlock()

	b := workload("b")
	up, _, err := pe.ps.Get(b, route).H1().Get(false)
	if err != nil {
		t.Fatalf("b's first connection, its preconnection lost: %v", err)
	}
	if rep := who(t, up); rep.SPIFFEID != b.ID.String() {
		t.Fatalf("b arrived as %s", rep.SPIFFEID)
	}
	if st := pe.ps.Preconnects()[route.Name]; st.Failed != 1 || st.Used != 0 {
		t.Fatalf("preconnections %+v, want 1 failed, none used", st)
	}
}
