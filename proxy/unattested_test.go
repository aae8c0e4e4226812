package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
)

// holdResult is what a holding client (mode "hold") saw on one of its
// connections: kind "request" (it sent a GET) or "silent" (it sent
// nothing); the answer, if any; whether procmesh closed the connection
// within holdWait. A last line of kind "ready" says the client now holds
// what stayed open, until its stdin closes.
type holdResult struct {
	Kind   string `json:"kind"`
	Status int    `json:"status,omitempty"`
	Body   string `json:"body,omitempty"`
	Closed bool   `json:"closed"`
	Err    string `json:"err,omitempty"`
}

const holdWait = 3 * time.Second

// runHoldClient is REDTEAM finding 5's hold.py: it opens PM_N connections
// that each send a GET, one after the other, then PM_SILENT at once that
// send nothing, keeps every connection procmesh does not close, and holds
// them until its stdin closes.
func runHoldClient(sock string) error {
	n, _ := strconv.Atoi(os.Getenv("PM_N"))
	silent, _ := strconv.Atoi(os.Getenv("PM_SILENT"))
	out := json.NewEncoder(os.Stdout)
	var mu sync.Mutex
	var held []net.Conn
	// watch reads the answer, if any, and the end of the stream; it closes
	// the connection when procmesh did, as a client would, and holds it
	// otherwise.
	watch := func(c net.Conn, kind string) holdResult {
		r := holdResult{Kind: kind}
		c.SetReadDeadline(time.Now().Add(holdWait))
		b, err := io.ReadAll(c)
		if len(b) > 0 {
			if res, perr := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil); perr == nil {
				body, _ := io.ReadAll(res.Body)
				r.Status, r.Body = res.StatusCode, string(body)
			} else {
				r.Err = fmt.Sprintf("answer %q: %v", b, perr)
			}
		}
		var ne net.Error
		if r.Closed = !errors.As(err, &ne) || !ne.Timeout(); r.Closed {
			c.Close()
		} else {
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
		return r
	}
	for i := 0; i < n; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		io.WriteString(c, "GET /f11 HTTP/1.1\r\nHost: echo.test\r\n\r\n")
		out.Encode(watch(c, "request"))
	}
	results := make([]holdResult, silent)
	var wg sync.WaitGroup
	for i := range silent {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = watch(c, "silent")
		}()
	}
	wg.Wait()
	for _, r := range results {
		out.Encode(r)
	}
	out.Encode(holdResult{Kind: "ready"})
	io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
	return nil
}

// holder is a running holding client.
type holder struct {
	cmd     *exec.Cmd
	stdin   io.Closer
	results []holdResult
}

// startHolder runs bin as uid in mode "hold" against sock and waits until
// it holds what it could.
func (e *env) startHolder(t *testing.T, bin string, uid int, sock string, requests, silent int) *holder {
	t.Helper()
	cmd := e.command(bin, uid, "hold", "PM_SOCK="+sock, "PM_N="+strconv.Itoa(requests), "PM_SILENT="+strconv.Itoa(silent))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	for i := 0; ; i++ {
		if err = cmd.Start(); err == nil || i == 20 || !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(20 * time.Millisecond) // see env.run
	}
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(h.stop)
	dec := json.NewDecoder(stdout)
	for {
		var r holdResult
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("holding client: %v; stderr: %s", err, stderr.String())
		}
		if r.Kind == "ready" {
			return h
		}
		h.results = append(h.results, r)
	}
}

func (h *holder) stop() {
	h.stdin.Close()
	h.cmd.Wait()
}

// TestThreat_F11_UnattestedConnections reproduces REDTEAM finding 5:
// processes of a uid that no entry names (uid 1000 running an unregistered
// binary) open many connections, some with a request, some silent, and
// hold what they can, with limits.max_connections at 20. A connection
// refused for having no identity is closed after its answer; the uid holds
// at most limits.max_unattested_connections_per_uid (5) silent connections,
// the others are answered and closed at once; and registered callers (root,
// and a registered binary of that same uid) are still served, over
// HTTP/1.1 and h2c. The slots come back when the holders leave.
func TestThreat_F11_UnattestedConnections(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	stranger := e.client("stranger", "salt-stranger")
	sameUID := e.client("registered-1000", "salt-registered")
	self, _ := os.Executable()
	e.setEntries(
		registry.Entry{ID: idA, Selectors: []string{pathSel(self)}},
		registry.Entry{ID: idB, Selectors: []string{pathSel(sameUID), "unix:uid:1000"}},
	)
	const perUID = 5
	lp := e.startLimited("f11", proxy.Limits{MaxConnections: 20, MaxConnectionsPerIdentity: 10,
		MaxUnattestedConnectionsPerUID: perUID, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})

	// Two unregistered processes of uid 1000, each with 10 requests and 12
	// silent connections: 44 connections, over twice max_connections.
	holders := []*holder{
		e.startHolder(t, stranger, 1000, lp.sock, 10, 12),
		e.startHolder(t, stranger, 1000, lp.sock, 10, 12),
	}
	heldOpen := 0
	for i, h := range holders {
		for _, r := range h.results {
			switch {
			case r.Err != "":
				t.Errorf("holder %d, %s connection: %s", i, r.Kind, r.Err)
			case r.Kind == "request" && (r.Status != http.StatusForbidden || !strings.Contains(r.Body, "matches no registration entry")):
				t.Errorf("holder %d: a request got %d %q, want 403 naming its selectors", i, r.Status, r.Body)
			case r.Kind == "request" && !r.Closed:
				t.Errorf("holder %d: a connection refused for having no identity stayed open after the 403", i)
			case r.Kind == "silent" && r.Closed && (r.Status != http.StatusForbidden ||
				!strings.Contains(r.Body, "(limits.max_unattested_connections_per_uid: 5)")):
				t.Errorf("holder %d: a silent connection was closed with %d %q, want 403 naming the limit", i, r.Status, r.Body)
			case r.Kind == "silent" && !r.Closed:
				heldOpen++
			}
		}
	}
	if heldOpen > perUID {
		t.Errorf("uid 1000's unregistered processes hold %d connections open, want at most %d", heldOpen, perUID)
	}
	t.Logf("uid 1000's unregistered processes hold %d connections", heldOpen)

	// Registered callers are served meanwhile: root on HTTP/1.1 and h2c...
	if _, _, r, body := keepAlive(t, lp.sock); r.StatusCode != http.StatusOK {
		t.Errorf("registered caller (root): %d %q", r.StatusCode, body)
	}
	resp, err := h2cClient(lp.sock).Get("http://echo.test/f11-h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("registered caller (root, h2c): %d %q", resp.StatusCode, b)
	}
	// ... and a registered binary of uid 1000, whose uid's bucket is full.
	rs, err := e.run(sameUID, 1000, "origin", "PM_SOCK="+lp.sock, "PM_URL=http://echo.test/f11", "PM_N=2")
	if err != nil || len(rs) != 2 {
		t.Fatalf("registered caller of uid 1000: %+v %v", rs, err)
	}
	for _, r := range rs {
		if got := decodeReply(t, r).SPIFFEID; got != idB.String() {
			t.Errorf("registered caller of uid 1000 arrived as %s, want %s", got, idB)
		}
	}
	if n := len(lp.audit.Lines("limits.max_unattested_connections_per_uid")); n == 0 {
		t.Errorf("no audit line names the limit:\n%s", lp.audit.String())
	}

	// When the holders leave, their slots come back: a new unregistered
	// silent connection is held again (it is within the bucket).
	for _, h := range holders {
		h.stop()
	}
	if !eventually(5*time.Second, func() bool {
		h := e.startHolder(t, stranger, 1000, lp.sock, 0, 1)
		defer h.stop()
		return len(h.results) == 1 && !h.results[0].Closed
	}) {
		t.Error("uid 1000's bucket never emptied after its holders left")
	}

	// A refusal for having no identity closes the connection on every
	// client path: the fast path's GET, a chunked POST (net/http), h2c
	// (GOAWAY). The test process is unregistered from here on.
	e.setEntries(registry.Entry{ID: idB, Selectors: []string{pathSel(sameUID), "unix:uid:1000"}})
	for _, req := range []string{
		"GET /f11 HTTP/1.1\r\nHost: echo.test\r\n\r\n",
		"POST /f11 HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
	} {
		if resp, closed := rawExchange(t, lp.sock, req, 5*time.Second); !strings.HasPrefix(resp, "HTTP/1.1 403") || !closed {
			t.Errorf("%.20q: (closed %v) %.100q, want 403 and the connection closed", req, closed, resp)
		}
	}
	h := dialH2C(t, lp.sock)
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("echo.test", "/f11-h2"),
		EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	h.conn.SetDeadline(time.Now().Add(5 * time.Second))
	var status string
	goaway := false
	for {
		f, err := h.fr.ReadFrame()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("h2c: the connection stayed open after the refusal (status %q, GOAWAY %v)", status, goaway)
			break
		}
		if err != nil {
			break // closed
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			hpack.NewDecoder(4096, func(hf hpack.HeaderField) {
				if hf.Name == ":status" {
					status = hf.Value
				}
			}).Write(f.HeaderBlockFragment())
		case *http2.GoAwayFrame:
			goaway = true
		}
	}
	if status != "403" || !goaway {
		t.Errorf("h2c: status %q, GOAWAY %v; want 403 and a GOAWAY", status, goaway)
	}
}
