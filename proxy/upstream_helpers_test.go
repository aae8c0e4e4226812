package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// runUpstreamClient is the child-process side of the modes this file's
// tests add (see runClient).
func runUpstreamClient(mode string) error {
	switch mode {
	case "poll":
		return runPollClient()
	case "grpc":
		return runGRPCClient()
	}
	return fmt.Errorf("unknown client mode %q", mode)
}

// runPollClient GETs PM_URL on one keep-alive connection until the
// upstream answers over PM_PROTO (at most PM_N tries, PM_GAP apart), then
// PM_AFTER more times, printing every answer. With no PM_PROTO it makes
// PM_N requests.
func runPollClient() error {
	sock, target, want := os.Getenv("PM_SOCK"), os.Getenv("PM_URL"), os.Getenv("PM_PROTO")
	n, _ := strconv.Atoi(os.Getenv("PM_N"))
	after, _ := strconv.Atoi(os.Getenv("PM_AFTER"))
	gap, _ := time.ParseDuration(os.Getenv("PM_GAP"))
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		MaxConnsPerHost: 1,
	}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	out := json.NewEncoder(os.Stdout)
	reached := false
	for i := 0; i < n || (reached && after > 0); i++ {
		if reached {
			after--
		}
		resp, err := c.Get(target)
		if err != nil {
			out.Encode(clientResult{Err: err.Error()})
			return nil
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out.Encode(clientResult{Status: resp.StatusCode, Proto: resp.Proto, Body: string(b)})
		var rep struct {
			Proto string `json:"proto"`
		}
		json.Unmarshal(b, &rep)
		if want != "" && rep.Proto == want && !reached {
			reached = true
			n = 0
		}
		if !reached && gap > 0 {
			time.Sleep(gap)
		}
	}
	return nil
}

// upstreamReply is echo's answer, with the protocol it saw.
type upstreamReply struct {
	echoReply
	Proto string `json:"proto"`
}

func decodeUpstream(t *testing.T, r clientResult) upstreamReply {
	t.Helper()
	if r.Err != "" || r.Status != http.StatusOK {
		t.Fatalf("request failed: status %d err %q body %q", r.Status, r.Err, r.Body)
	}
	var rep upstreamReply
	if err := json.Unmarshal([]byte(r.Body), &rep); err != nil {
		t.Fatalf("upstream reply %q: %v", r.Body, err)
	}
	return rep
}

// wantBadGateway runs client a once against url (extra: more of its
// environment) and fails the test unless it got a 502 whose body says
// want; it returns the body.
func (e *env) wantBadGateway(a, url, want string, extra ...string) string {
	e.t.Helper()
	rs, err := e.run(a, -1, "origin", append([]string{"PM_URL=" + url}, extra...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	if rs[0].Status != http.StatusBadGateway || !strings.Contains(rs[0].Body, want) {
		e.t.Errorf("%s: status %d body %q, want 502 saying %q", url, rs[0].Status, rs[0].Body, want)
	}
	return rs[0].Body
}

// startEchoWith starts another echo upstream presenting echoID to the
// env's clients.
func (e *env) startEchoWith(o echo.Options) *echo.Server {
	e.t.Helper()
	svid, err := e.upCA.Mint(echoID)
	if err != nil {
		e.t.Fatal(err)
	}
	o.SVID, o.Bundles = svid, x509bundle.NewSet(e.ca.Bundle())
	s := echo.New(o)
	if err := s.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// route is a route to addr that demands echoID of the upstream.
func route(name, proto, addr string) proxy.Route {
	return proxy.Route{Name: name, Host: name + ".test", Upstream: addr, ServerID: echoID, Protocol: proto}
}

// withRoutes gives srv the env's routes plus extra, every caller allowed.
func (e *env) withRoutes(srv *proxy.Server, extra ...proxy.Route) {
	e.t.Helper()
	srv.SetState(e.statePlus(extra...))
}

// secondProxy is another data plane over the env's resolver and identity
// store, with its own upstream options and a log the test can read.
type secondProxy struct {
	srv  *proxy.Server
	sock string
	log  *logtest.Buffer
}

func (e *env) startProxy(name string, o proxy.UpstreamOptions, routes ...proxy.Route) *secondProxy {
	e.t.Helper()
	sp := &secondProxy{sock: filepath.Join(e.dir, name+".sock"), log: &logtest.Buffer{}}
	pol, err := policy.New(true, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	st, err := proxy.NewState(routes, pol)
	if err != nil {
		e.t.Fatal(err)
	}
	sp.srv, err = proxy.New(e.resolver, e.store, st, proxy.Options{Upstream: o, Logger: zerolog.New(sp.log)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.serve(sp.srv, sp.sock, "")
	return sp
}

// idsPerConn maps each upstream connection to the identities it carried,
// for records whose Proto is proto ("" for all).
func idsPerConn(recs []echo.Record, proto string) map[uint64]map[string]bool {
	out := make(map[uint64]map[string]bool)
	for _, r := range recs {
		if proto != "" && r.Proto != proto {
			continue
		}
		if out[r.ConnID] == nil {
			out[r.ConnID] = make(map[string]bool)
		}
		out[r.ConnID][r.SPIFFEID.String()] = true
	}
	return out
}

// interleaved runs procs processes of each of a and b at once, each making
// n requests to route host; it checks every answer carries its caller's
// identity over proto and returns the upstream's records.
func interleaved(t *testing.T, e *env, srv *echo.Server, host, proto string, procs, n int, a, b string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range []struct{ name, bin string }{{"a", a}, {"b", b}} {
		for p := 0; p < procs; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs, err := e.run(c.bin, -1, "origin", "PM_URL=http://"+host+"/who/"+c.name, "PM_N="+strconv.Itoa(n))
				if err != nil {
					t.Errorf("client %s: %v", c.name, err)
					return
				}
				for _, r := range rs {
					rep := decodeUpstream(t, r)
					if rep.SPIFFEID != "spiffe://example.org/"+c.name || rep.Proto != proto {
						t.Errorf("client %s: upstream saw %s over %s, want %s", c.name, rep.SPIFFEID, rep.Proto, proto)
					}
				}
			}()
		}
	}
	wg.Wait()
	recs := srv.Records()
	if len(recs) != 2*procs*n {
		t.Fatalf("upstream saw %d requests, want %d", len(recs), 2*procs*n)
	}
	for _, r := range recs {
		caller := strings.TrimPrefix(r.Path, "/who/")
		if r.SPIFFEID.String() != "spiffe://example.org/"+caller || r.Proto != proto {
			t.Errorf("request from %s arrived as %s over %s", caller, r.SPIFFEID, r.Proto)
		}
	}
	conns := idsPerConn(recs, "")
	perID := map[string]int{}
	for conn, ids := range conns {
		if len(ids) != 1 {
			t.Errorf("upstream connection %d carried identities %v", conn, ids)
		}
		for id := range ids {
			perID[id]++
		}
	}
	// procs processes per identity, each on its own client connection,
	// share one multiplexed upstream connection.
	for id, n := range perID {
		if n != 1 {
			t.Errorf("%s used %d upstream connections, want 1 multiplexed connection", id, n)
		}
	}
}
