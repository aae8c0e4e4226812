package proxy_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/procmesh/procmesh/registry"
)

// Bytes written by another process than the one that connected (THREATS
// I12): a registered process connects, then its socket is inherited by a
// child across fork+exec, or passed over SCM_RIGHTS, to another program.
// Every path refuses the other's bytes: nothing of them reaches the
// upstream, the caller is told why, and an audit line names the writer.
func TestThreat_I12_ForeignWriterRefused(t *testing.T) {
	cases := []struct {
		name, proto, sock string
		first             int
		// want is in the writer's answer: a 403 body for HTTP, the line
		// before end-of-stream for tunnels and raw sockets.
		want string
	}{
		{name: "fast-path", proto: "get", first: 1, want: "written by process"},
		{name: "fast-path-first-request", proto: "get", want: "written by process"},
		{name: "net-http", proto: "chunked", first: 1, want: "written by process"},
		{name: "h2c", proto: "h2c"},
		{name: "connect", proto: "tunnel", want: "procmesh: refused: bytes on this connection were written by process"},
		{name: "raw", proto: "raw", sock: "raw", want: "procmesh: refused: bytes on this connection were written by process"},
	}
	for _, how := range []string{"inherit", "scm"} {
		for _, c := range cases {
			t.Run(how+"/"+c.name, func(t *testing.T) {
				e := newEnv(t, envOptions{defaultAllow: true, records: true})
				owner, other := e.client("owner", "owner"), e.client("other", "other")
				e.setEntries(registry.Entry{ID: idA, Selectors: []string{pathSel(owner)}})
				last := runGive(t, e, owner, other, how, c.proto, c.sock, c.first)
				switch {
				case c.proto == "h2c":
					// The preface itself is foreign: no HTTP/2 answer can be made.
					if last.Status == 200 || last.Err == "" {
						t.Errorf("h2c from the other process: %+v, want a failed connection", last)
					}
				case c.proto == "get" || c.proto == "chunked":
					if last.Status != 403 || !strings.Contains(last.Body, c.want) || !strings.Contains(last.Body, "not by process") {
						t.Errorf("the other process's request: status %d body %q, want 403 naming both processes", last.Status, last.Body)
					}
				default:
					if !strings.Contains(last.Body, c.want) {
						t.Errorf("the other process read %q, want a line with %q", last.Body, c.want)
					}
				}
				if c.sock == "raw" {
					// The raw route's upstream echoes: the other's bytes never came back.
					if strings.Contains(last.Body, "GET /whose") {
						t.Errorf("the other process's bytes reached the raw upstream: %q", last.Body)
					}
				} else if n := len(e.echo.Records()); n != c.first {
					t.Errorf("the upstream saw %d requests, want the connecting process's %d only", n, c.first)
				}
				if lines := e.audit.Lines(`"writer_pid"`, `"refused"`); len(lines) != 1 {
					t.Errorf("want one audit line naming the writer, got %d:\n%s", len(lines), e.audit.String())
				}
			})
		}
	}
}

// Under attest.foreign_writer: attest, an HTTP/1.1 request another process
// wrote acts as that process, attested by itself: never as the connecting
// process (THREATS I12). Bytes in a tunnel or on a raw socket still come
// only from the process that opened it.
func TestThreat_I12_ForeignWriterAttested(t *testing.T) {
	cases := []struct {
		name, proto, sock string
		first             int
		registered        bool   // the other process has an entry (idB)
		want              string // its answer: idB's reply, or this text
	}{
		{name: "fast-path", proto: "get", first: 1, registered: true},
		{name: "fast-path-first-request", proto: "get", registered: true},
		{name: "net-http", proto: "chunked", first: 1, registered: true},
		{name: "h2c", proto: "h2c", registered: true},
		{name: "unregistered", proto: "get", first: 1, want: "matches no registration entry"},
		{name: "connect", proto: "tunnel", registered: true, want: "procmesh: refused: bytes on this connection were written by process"},
		{name: "raw", proto: "raw", sock: "raw", registered: true, want: "procmesh: refused: bytes on this connection were written by process"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{defaultAllow: true, records: true, attestWriters: true})
			owner, other := e.client("owner", "owner"), e.client("other", "other")
			entries := []registry.Entry{{ID: idA, Selectors: []string{pathSel(owner)}}}
			if c.registered {
				entries = append(entries, registry.Entry{ID: idB, Selectors: []string{pathSel(other)}})
			}
			e.setEntries(entries...)
			last := runGive(t, e, owner, other, "scm", c.proto, c.sock, c.first)
			if c.want == "" {
				if got := decodeReply(t, last).SPIFFEID; got != idB.String() {
					t.Fatalf("the other process's request arrived as %s, want its own %s", got, idB)
				}
				return
			}
			if !strings.Contains(last.Body, c.want) {
				t.Errorf("the other process got %+v, want %q", last, c.want)
			}
			for _, r := range e.echo.Records() {
				if r.SPIFFEID == idB || r.Path == "/whose" && r.SPIFFEID == idA && c.first == 0 {
					t.Errorf("the upstream saw %s for the other process's bytes", r.SPIFFEID)
				}
			}
		})
	}
}

// runGive runs owner in the attacker's "give" mode: it connects (to the raw
// socket when sock is "raw"), makes first requests of proto itself, each
// checked to arrive as idA, and hands the connection to other (how:
// inherit or scm), whose answer runGive returns.
func runGive(t *testing.T, e *env, owner, other, how, proto, sock string, first int) clientResult {
	t.Helper()
	env := []string{"PM_URL=http://echo.test/whose", "PM_NEXT=" + other, "PM_PROTO=" + proto,
		"PM_HOW=" + how, "PM_FIRST=" + strconv.Itoa(first)}
	if sock == "raw" {
		env = append(env, "PM_SOCK="+e.rawSock, "PM_URL=http://echo-raw.test/whose")
	}
	rs, err := e.run(owner, -1, "give", env...)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != first+1 {
		t.Fatalf("got %d answers %+v, want %d", len(rs), rs, first+1)
	}
	for i := 0; i < first; i++ {
		if got := decodeReply(t, rs[i]).SPIFFEID; got != idA.String() {
			t.Errorf("the connecting process's own request %d arrived as %s", i, got)
		}
	}
	return rs[first]
}
