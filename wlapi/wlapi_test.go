//go:build linux

package wlapi_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/tlsconf"
)

// Two binaries, one as root and one as uid 1000, each with go-spiffe's
// X509Source on SPIFFE_ENDPOINT_SOCKET: each gets its own SPIFFE ID, a
// chain that verifies against the bundle it got, and its own key (the
// source parses the key with the leaf and refuses a mismatch).
func TestThreat_I13_TwoBinariesTwoIdentities(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := e.client("a"), e.client("b")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b), "unix:uid:1000"}},
	)
	ra := one(t, e.run(a, -1, "source"))
	rb := one(t, e.run(b, 1000, "source"))
	if ra.ID != idA.String() || rb.ID != idB.String() {
		t.Fatalf("a got %+v, b got %+v; want %s and %s", ra, rb, idA, idB)
	}
	e.waitAudit(`"rpc":"FetchX509SVID"`, `"spiffe_id":"`+idA.String()+`"`, `"sent":"x509_svid"`)
	e.waitAudit(`"rpc":"FetchX509SVID"`, `"spiffe_id":"`+idB.String()+`"`, `"uid":1000`, `"sent":"x509_svid"`)
}

// A process sees the bundle of its own trust domain only, in
// FetchX509Bundles and FetchX509SVID, not the other bundles procmesh
// trusts for its routes.
func TestThreat_I13_OnlyItsOwnBundle(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.client("a")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	rs := e.run(a, -1, "bundles")
	if len(rs) != 2 {
		t.Fatalf("got %+v", rs)
	}
	for _, r := range rs {
		if strings.Join(r.Serials, " ") != nodeTD.String() {
			t.Fatalf("bundles of %v; want %s only", r.Serials, nodeTD)
		}
	}
}

// A process that matches no entry gets PermissionDenied, with its
// selectors, and no SVID; its audit line says so.
func TestThreat_I13_UnregisteredPermissionDenied(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, stranger := e.client("a"), e.client("stranger")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	r := one(t, e.run(stranger, 1000, "fetch"))
	if r.Code != codes.PermissionDenied.String() || r.ID != "" {
		t.Fatalf("unregistered process got %+v; want PermissionDenied", r)
	}
	if !strings.Contains(r.Err, "matches no registration entry") || !strings.Contains(r.Err, pathSel(stranger)) {
		t.Fatalf("refusal does not list the selectors: %s", r.Err)
	}
	e.waitAudit(`"rpc":"FetchX509SVID"`, `"outcome":"PermissionDenied"`, `"uid":1000`, pathSel(stranger))
}

// A process refused for having no entry is found on its next RPC, on the
// same connection, once a reload gives it one (clients retry on
// PermissionDenied without reconnecting).
func TestThreat_I13_EntryAddedLaterFoundOnTheSameConnection(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.client("a")
	goFile := filepath.Join(e.dir, "go")
	_, ch := e.start(a, -1, "twice", "PM_GO="+goFile)
	if r := next(t, ch); r.Code != codes.PermissionDenied.String() {
		t.Fatalf("before its entry: %+v", r)
	}
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := next(t, ch); r.ID != idA.String() {
		t.Fatalf("after its entry was added: %+v", r)
	}
}

// A request without the workload.spiffe.io header is InvalidArgument,
// from a registered process too, before anything else is looked at.
func TestWorkloadAPI_MissingHeaderIsInvalidArgument(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.client("a")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	r := one(t, e.run(a, -1, "nometa"))
	if r.Code != codes.InvalidArgument.String() || !strings.Contains(r.Err, "workload.spiffe.io") {
		t.Fatalf("without the header: %+v; want InvalidArgument naming the header", r)
	}
	// The same raw client with the header is served.
	if r := one(t, e.run(a, -1, "stream", "PM_N=1")); r.ID != idA.String() {
		t.Fatalf("with the header: %+v", r)
	}
}

// The WIT RPCs are not served.
func TestWorkloadAPI_WITUnimplemented(t *testing.T) {
	e := newEnv(t, envOptions{})
	conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 10*time.Second)
	defer cancel()
	st, err := workloadpb.NewSpiffeWorkloadAPIClient(conn).FetchWITSVID(ctx, &workloadpb.WITSVIDRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("FetchWITSVID: %v; want Unimplemented", err)
	}
}

// Rotation reaches go-spiffe's X509Source: with a 4s SVID lifetime the
// store renews at half-life and the stream sends each new SVID.
func TestWorkloadAPI_RotationReachesTheSource(t *testing.T) {
	e := newEnv(t, envOptions{ttl: 4 * time.Second})
	a := e.client("a")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	r := one(t, e.run(a, -1, "source", "PM_ROTATIONS=3"))
	if r.ID != idA.String() || len(r.Serials) != 3 {
		t.Fatalf("got %+v; want 3 SVIDs of %s", r, idA)
	}
	for _, s := range r.Serials {
		e.waitAudit(`"sent":"x509_svid"`, `"serial":"`+s+`"`)
	}
}

// A process cannot have another's JWT-SVID by naming its SPIFFE ID.
func TestThreat_I13_JWTSVIDOfAnotherIDRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := e.client("a"), e.client("b")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b)}},
	)
	r := one(t, e.run(a, -1, "jwt", "PM_AUD=https://sts.example", "PM_JWT_ID="+idB.String()))
	if r.Code != codes.PermissionDenied.String() || r.ID != "" || !strings.Contains(r.Err, "its own SPIFFE ID only") {
		t.Fatalf("a asking for b's JWT-SVID got %+v; want PermissionDenied", r)
	}
	e.waitAudit(`"rpc":"FetchJWTSVID"`, `"spiffe_id":"`+idA.String()+`"`, `"outcome":"PermissionDenied"`)
	for _, name := range []string{idA.String(), ""} {
		if r := one(t, e.run(a, -1, "jwt", "PM_AUD=https://sts.example", "PM_JWT_ID="+name)); r.ID != idA.String() {
			t.Fatalf("a asking for its own JWT-SVID (spiffe_id %q) got %+v", name, r)
		}
	}
}

// JWT-SVIDs end to end through go-spiffe's client: a process's token
// names it, validates through ValidateJWTSVID and against the JWT bundle
// of FetchJWTBundles, and not for another audience (InvalidArgument).
func TestWorkloadAPI_JWTSVIDValidates(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := e.client("a"), e.client("b")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b), "unix:uid:1000"}},
	)
	ra := one(t, e.run(a, -1, "jwt-validate", "PM_AUD=https://sts.example"))
	rb := one(t, e.run(b, 1000, "jwt-validate", "PM_AUD=https://sts.example"))
	if ra.ID != idA.String() || rb.ID != idB.String() || ra.Code != codes.InvalidArgument.String() {
		t.Fatalf("a got %+v, b got %+v", ra, rb)
	}
	e.waitAudit(`"rpc":"ValidateJWTSVID"`, `"spiffe_id":"`+idB.String()+`"`, `"outcome":"InvalidArgument"`)
	e.waitAudit(`"rpc":"FetchJWTSVID"`, `"spiffe_id":"`+idA.String()+`"`, `"jwt_jti_sha256":"`, `"outcome":"OK"`)
	// Tokens are named by their jti's hash, never written: a JWT's
	// header starts with eyJ ({"...).
	if strings.Contains(e.audit.String(), "eyJ") {
		t.Fatalf("a token is in the audit log:\n%s", e.audit.String())
	}
}

// A JWT key rotation reaches FetchJWTBundles: the next key is published
// before it signs, in a new message with the full set.
func TestWorkloadAPI_JWTBundleRotation(t *testing.T) {
	e := newEnv(t, envOptions{jwtRotation: 2 * time.Second})
	a := e.client("a")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	rs := e.run(a, -1, "jwt-bundles", "PM_N=3")
	if len(rs) != 3 {
		t.Fatalf("got %+v", rs)
	}
	for i, r := range rs {
		if r.ID != nodeTD.IDString() || len(r.Serials) == 0 {
			t.Fatalf("message %d: %+v; want the keys of %s only", i, r, nodeTD)
		}
		if i > 0 && strings.Join(r.Serials, " ") == strings.Join(rs[i-1].Serials, " ") {
			t.Fatalf("message %d repeats the key set of the one before: %+v", i, rs)
		}
	}
}

// A change of the trust domain's bundle reaches a FetchX509Bundles stream
// (a new message, with the full bundle) the way a reload makes it: the
// operator adds, in trust_bundles, the root of the CA the trust domain
// moves to. The stream sent one message for the old bundle and one for
// the new, nothing in between, and never the upstream trust domain's
// bundle, which procmesh trusts too.
func TestWorkloadAPI_BundleChangeReachesTheStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.client("a")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	_, ch := e.start(a, -1, "x509-bundles", "PM_N=2")
	old := fingerprints(e.ca.Bundle())
	if r := next(t, ch); r.ID != nodeTD.IDString() || !slices.Equal(r.Serials, old) {
		t.Fatalf("first message: %+v; want the roots %v of %s only", r, old, nodeTD.IDString())
	}
	nextCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: nodeTD, StateDir: filepath.Join(e.dir, "next-state")})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(e.dir, "next-ca.pem")
	if err := os.WriteFile(file, nextCA.BundlePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	e.reloadTrustBundles(tlsconf.BundleFile{TrustDomain: nodeTD, File: file})
	if !e.bundles.Has(upstreamTD) {
		t.Fatalf("the reload dropped %s: the test would not show it withheld", upstreamTD)
	}
	want := append(slices.Clone(old), fingerprints(nextCA.Bundle())...)
	slices.Sort(want)
	if r := next(t, ch); r.ID != nodeTD.IDString() || !slices.Equal(r.Serials, want) {
		t.Fatalf("after the bundle changed: %+v; want the roots %v of %s only", r, want, nodeTD.IDString())
	}
	e.waitAudit(`"rpc":"FetchX509Bundles"`, `"spiffe_id":"`+idA.String()+`"`, `"messages":2,`)
}

// fingerprints are the sorted sha256 of b's roots, as the x509-bundles
// client prints them.
func fingerprints(b *x509bundle.Bundle) []string {
	var out []string
	for _, c := range b.X509Authorities() {
		out = append(out, fingerprint(c))
	}
	slices.Sort(out)
	return out
}

// A reload that removes a process's entry ends its stream with
// PermissionDenied; one that gives it another ID sends that ID's SVID.
func TestThreat_I13_ReloadChangesTheStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.client("a")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	_, ch := e.start(a, -1, "stream")
	if r := next(t, ch); r.ID != idA.String() {
		t.Fatalf("first message: %+v", r)
	}
	e.setEntries(registry.Entry{ID: idB, Selectors: []string{pathSel(a)}})
	if r := next(t, ch); r.ID != idB.String() {
		t.Fatalf("after the entry changed to %s: %+v", idB, r)
	}
	e.setEntries()
	if r := next(t, ch); r.Code != codes.PermissionDenied.String() {
		t.Fatalf("after the entry was removed: %+v; want PermissionDenied", r)
	}
}

// The stream ends when its process exits, even while the connection stays
// open in a child that inherited it: nothing more is sent on it.
func TestThreat_I13_StreamEndsWhenProcessExits(t *testing.T) {
	e := newEnv(t, envOptions{})
	a := e.client("a")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	cmd, ch := e.start(a, -1, "share-exit")
	child := next(t, ch)
	if child.PID == 0 {
		t.Fatalf("no child: %+v", child)
	}
	t.Cleanup(func() { killPID(child.PID) })
	if r := next(t, ch); r.ID != idA.String() {
		t.Fatalf("first message: %+v", r)
	}
	cmd.Wait()
	line := e.waitAudit(`"rpc":"FetchX509SVID"`, `"outcome":"Unavailable"`, "exited")
	if !strings.Contains(line, `"messages":1`) {
		t.Fatalf("audit line: %s", line)
	}
}

// A registered process connects and hands its connection (inherited
// across fork+exec, or over SCM_RIGHTS) to an unregistered program, which
// writes the requests: it gets nothing, since every byte read is
// attributed to its writer (THREATS I12 on the Workload API).
func TestThreat_I13_ConnectionGivenToAnotherProcess(t *testing.T) {
	for _, how := range []string{"inherit", "scm"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			a, stranger := e.client("a"), e.client("stranger")
			e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
			r := one(t, e.run(a, -1, "give", "PM_NEXT="+stranger, "PM_HOW="+how))
			if r.ID != "" || r.Code == codes.OK.String() {
				t.Fatalf("the process given the connection got %+v; want no SVID", r)
			}
			e.waitAudit(`"event":"workload_api"`, `"rpc":"connection"`, "were written by process", stranger)
		})
	}
}

// The exec race (THREATS I11 on the Workload API): an unregistered
// program connects and execs a registered one before procmesh accepts.
// With the connect-time record it is refused; without it, it would be
// attested as the registered program (the window the record closes).
func TestThreat_I13_ExecRace(t *testing.T) {
	for _, records := range []bool{true, false} {
		name := map[bool]string{true: "connect-time record", false: "no record"}[records]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{records: records, hold: true})
			victim, attacker := e.client("victim"), e.client("attacker")
			e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(victim)}})
			cmd, ch := e.start(attacker, -1, "connect-exec", "PM_NEXT="+victim)
			waitExe(t, cmd.Process.Pid, victim)
			e.release()
			r := next(t, ch)
			if records && (r.ID != "" || r.Code != codes.PermissionDenied.String()) {
				t.Fatalf("exec after connect got %+v; want PermissionDenied", r)
			}
			if !records && r.ID != idA.String() {
				t.Fatalf("without the record, the exec race is expected to get %s (the window the record closes): %+v", idA, r)
			}
		})
	}
}

// Exec after attestation: a program connects, waits until procmesh has
// attested it (its handshake answer arrives), then execs a registered
// program that makes the requests on the connection. The process is no
// longer the one attested: refused, whether the first program had no
// entry (asked again by PID, the new image must not be attested in its
// place) or an entry of its own (the registered program's SVID and the
// first one's are both refused).
func TestThreat_I13_ExecAfterAttestation(t *testing.T) {
	for _, registered := range []bool{false, true} {
		name := map[bool]string{false: "unregistered first", true: "registered first"}[registered]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			victim, attacker := e.client("victim"), e.client("attacker")
			entries := []registry.Entry{{ID: idA, Selectors: []string{pathSel(victim)}}}
			if registered {
				entries = append(entries, registry.Entry{ID: idB, Selectors: []string{pathSel(attacker)}})
			}
			e.setEntries(entries...)
			r := one(t, e.run(attacker, -1, "attested-exec", "PM_NEXT="+victim))
			if r.ID != "" || r.Code != codes.PermissionDenied.String() {
				t.Fatalf("exec after attestation got %+v; want PermissionDenied", r)
			}
		})
	}
}

// Connections whose process has no identity are bounded per uid (THREATS
// F11): over the bound, a connection is closed at the handshake; one that
// closes frees its slot.
func TestWorkloadAPI_UnattestedConnectionsPerUID(t *testing.T) {
	e := newEnv(t, envOptions{maxUnattested: 2})
	// The test process itself has no entry.
	fetch := func() (*grpc.ClientConn, error) {
		conn, err := grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(withHeader(context.Background()), 10*time.Second)
		defer cancel()
		_, err = workloadpb.NewSpiffeWorkloadAPIClient(conn).FetchJWTSVID(ctx, &workloadpb.JWTSVIDRequest{Audience: []string{"a"}})
		return conn, err
	}
	var conns []*grpc.ClientConn
	for i := 0; i < 2; i++ {
		c, err := fetch()
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("connection %d: %v; want PermissionDenied", i, err)
		}
		conns = append(conns, c)
	}
	c, err := fetch()
	c.Close()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("third connection: %v; want Unavailable (closed at the handshake)", err)
	}
	e.waitAudit(`"rpc":"connection"`, `"outcome":"ResourceExhausted"`, "already holds 2 connections without an identity")
	conns[0].Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := fetch()
		c.Close()
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection's slot was not freed: %v", err)
		}
	}
	conns[1].Close()
}

// Shutdown ends the streams (Unavailable), closes the connections and
// leaves no goroutine of the package behind: not the streams', not the
// pidfd watchers of their processes, which still run.
func TestWorkloadAPI_ShutdownLeavesNoGoroutine(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, stranger := e.client("a"), e.client("stranger")
	e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(a)}})
	_, ch := e.start(a, -1, "stream")
	if r := next(t, ch); r.ID != idA.String() {
		t.Fatalf("first message: %+v", r)
	}
	_, refused := e.start(stranger, -1, "twice", "PM_GO=/nonexistent")
	if r := next(t, refused); r.Code != codes.PermissionDenied.String() {
		t.Fatalf("unregistered: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if r := next(t, ch); r.Code != codes.Unavailable.String() || !strings.Contains(r.Err, "shutting down") {
		t.Fatalf("stream after Shutdown: %+v", r)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 2)
		if !strings.Contains(buf.String(), "procmesh/procmesh/wlapi.") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of wlapi left after Shutdown:\n%s", buf.String())
		}
	}
}

// A process over its uid's attestation budget (THREATS F12) is refused
// at the handshake, Unavailable: its connection is closed, so the
// client's retry comes on a new connection, attested anew, instead of
// being refused for good on this one.
func TestWorkloadAPI_RateLimitedClosesTheConnection(t *testing.T) {
	e := newEnv(t, envOptions{rate: 0.001, burst: 1})
	a, b := e.client("a"), e.client("b")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b)}},
	)
	if r := one(t, e.run(a, 1000, "fetch")); r.ID != idA.String() {
		t.Fatalf("first process of uid 1000: %+v", r)
	}
	r := one(t, e.run(b, 1000, "fetch"))
	if r.Code != codes.Unavailable.String() {
		t.Fatalf("second new process of uid 1000: %+v; want Unavailable", r)
	}
	e.waitAudit(`"rpc":"connection"`, `"outcome":"Unavailable"`, "faster than allowed")
	// a's stream may end Unavailable too, when procmesh sees a exit before
	// its hang-up: only b's lines count.
	if l := e.audit.Lines(`"rpc":"FetchX509SVID"`, `"exe":"`+b+`"`); len(l) != 0 {
		t.Fatalf("the limited connection was served RPCs: %s", l)
	}
}

// Only the identities the operator listed may use the Workload API, which
// hands a process its private key (listen.workload_api_ids): a registered
// process whose identity is not listed gets PermissionDenied naming the
// key, the listed one its SVID; a change applies to the next RPC.
func TestThreat_I13_IdentityNotListedRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	a, b := e.client("a"), e.client("b")
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(a)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(b)}},
	)
	e.srv.SetAllowed(func(id spiffeid.ID) bool { return id == idA })
	if r := one(t, e.run(a, -1, "fetch")); r.ID != idA.String() {
		t.Fatalf("listed identity got %+v; want its SVID", r)
	}
	r := one(t, e.run(b, -1, "fetch"))
	if r.Code != codes.PermissionDenied.String() || r.ID != "" || !strings.Contains(r.Err, "listen.workload_api_ids") {
		t.Fatalf("unlisted identity got %+v; want PermissionDenied naming listen.workload_api_ids", r)
	}
	e.waitAudit(`"rpc":"FetchX509SVID"`, `"outcome":"PermissionDenied"`, `"spiffe_id":"`+idB.String()+`"`)
	e.srv.SetAllowed(nil)
	if r := one(t, e.run(b, -1, "fetch")); r.ID != idB.String() {
		t.Fatalf("after the list allowed every identity, b got %+v", r)
	}
}
