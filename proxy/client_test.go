package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The test binary doubles as the client process: copied to distinct paths
// (and run as other uids), it is a real, separately attested caller.
// PROCMESH_TEST_CLIENT selects what it does; it prints one JSON line per
// response on stdout.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PROCMESH_TEST_CLIENT"); mode != "" {
		if err := runClient(mode); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// clientResult is one response as the client saw it.
type clientResult struct {
	Status int    `json:"status"`
	Proto  string `json:"proto,omitempty"` // the client leg's protocol
	Body   string `json:"body"`
	Err    string `json:"err,omitempty"`
}

func runClient(mode string) error {
	sock := os.Getenv("PM_SOCK")
	n, _ := strconv.Atoi(os.Getenv("PM_N"))
	if n == 0 {
		n = 1
	}
	target := os.Getenv("PM_URL")
	out := json.NewEncoder(os.Stdout)
	switch mode {
	case "origin", "absolute", "h2c":
		// One keep-alive connection to procmesh carries every request.
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			MaxConnsPerHost: 1,
		}
		if mode == "absolute" {
			tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: "procmesh"})
		}
		if mode == "h2c" {
			// Prior-knowledge HTTP/2 over the Unix socket, as gRPC does.
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		c := &http.Client{Transport: tr}
		for i := 0; i < n; i++ {
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				return err
			}
			if v := os.Getenv("PM_AUTH"); v != "" {
				req.Header.Set("Authorization", v) // a token of the caller's choosing
			}
			resp, err := c.Do(req)
			if err != nil {
				out.Encode(clientResult{Err: err.Error()})
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out.Encode(clientResult{Status: resp.StatusCode, Proto: resp.Proto, Body: string(b)})
		}
		return nil
	case "connect":
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		defer c.Close()
		u, _ := url.Parse(target)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host, u.Host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return out.Encode(clientResult{Status: resp.StatusCode, Body: string(b)})
		}
		// Plaintext HTTP inside the tunnel; procmesh adds the mTLS.
		for i := 0; i < n; i++ {
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Hostname())
			r, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			out.Encode(clientResult{Status: r.StatusCode, Body: string(b)})
		}
		return nil
	case "raw":
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		defer c.Close()
		payload := os.Getenv("PM_PAYLOAD")
		if _, err := io.WriteString(c, payload); err != nil {
			return err
		}
		c.(*net.UnixConn).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		return out.Encode(clientResult{Body: string(b)})
	case "handoff":
		// Connect and make one request; then hand the connection to another
		// executable (PM_NEXT), which makes its own request on it.
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		if err := getOver(c, target, out); err != nil {
			return err
		}
		f, err := c.(*net.UnixConn).File()
		if err != nil {
			return err
		}
		cmd := exec.Command(os.Getenv("PM_NEXT"), "-test.run=^$")
		cmd.Env = []string{"GORACE=atexit_sleep_ms=0", "PROCMESH_TEST_CLIENT=inherit", "PM_URL=" + target}
		cmd.ExtraFiles = []*os.File{f}
		cmd.Stdout = os.Stdout
		cmd.Stderr = os.Stderr
		return cmd.Run()
	case "inherit":
		c, err := net.FileConn(os.NewFile(3, "inherited"))
		if err != nil {
			return err
		}
		return getOver(c, target, out)
	case "poll", "grpc": // upstream_helpers_test.go
		return runUpstreamClient(mode)
	case "hold": // unattested_test.go
		return runHoldClient(sock)
	case "load": // spire_env_linux_test.go
		return runSPIRELoad()
	case "websocket": // websocket_test.go
		return runWebSocketClient(sock, target, out)
	case "write-exec", "read-fd", "pass", "pass-child", "fork", "fork-child", "sleep", "give", "speak": // attacker_client_test.go
		return runAttacker(mode)
	default:
		return fmt.Errorf("unknown client mode %q", mode)
	}
}

// getOver sends one origin-form GET on an open connection to procmesh and
// prints the response.
func getOver(c net.Conn, target string, out *json.Encoder) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)
	r, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	return out.Encode(clientResult{Status: r.StatusCode, Body: string(b)})
}

// parseResults decodes a client's JSON lines.
func parseResults(t testing.TB, stdout string) []clientResult {
	t.Helper()
	var rs []clientResult
	dec := json.NewDecoder(strings.NewReader(stdout))
	for dec.More() {
		var r clientResult
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("client output %q: %v", stdout, err)
		}
		rs = append(rs, r)
	}
	return rs
}
