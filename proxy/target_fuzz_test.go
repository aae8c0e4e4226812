package proxy

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// fuzzRoutes are the routes the target fuzzers resolve against.
func fuzzRoutes(t testing.TB) *State {
	st, err := NewState([]Route{
		{Name: "echo", Host: "echo.test", Upstream: "127.0.0.1:1", Protocol: ProtocolHTTP1},
		{Name: "kube", Host: "kube.test", Upstream: "127.0.0.1:2", Protocol: ProtocolHTTP1},
		{Name: "v6", Host: "::1", Upstream: "127.0.0.1:3", Protocol: ProtocolHTTP1},
		{Name: "ip", Host: "10.0.0.1", Upstream: "127.0.0.1:4", Protocol: ProtocolHTTP1},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// refHost is what host an authority names, by net/url's reading (port and
// IPv6 brackets dropped), compared the DNS way: ASCII case-insensitively,
// without a trailing dot. It is the reference upstream.NormalHost must agree with.
func refHost(authority string) string {
	h := (&url.URL{Host: authority}).Hostname()
	if strings.Count(authority, ":") > 1 && !strings.HasPrefix(authority, "[") {
		h = authority // an unbracketed IPv6 address, as routes write them
	}
	return strings.TrimSuffix(asciiLower(h), ".")
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

var authoritySeeds = []string{
	"echo.test", "ECHO.TEST", "echo.test.", "echo.test:80", "echo.test.:8080", "[::1]:443", "[::1]", "::1",
	"10.0.0.1:80", "echo.test:80:90", "[echo.test]:80", "echo.test..", "user@echo.test", "echo.test#x",
	"echo.test%00", "\u212aube.test", "%E2%84%AAube.test", "ECHO.test:", ":80", "", "[", "]:80", "echo.test\t",
}

// FuzzParseAuthority: an authority (Host header, CONNECT target, host of
// an absolute-form target) selects a route only when it names that
// route's host, read as net/url reads it and compared as DNS compares
// names (THREATS P4); never by Unicode case folding, never for a
// different host. It also never panics.
func FuzzParseAuthority(f *testing.F) {
	for _, s := range authoritySeeds {
		f.Add(s)
	}
	st := fuzzRoutes(f)
	f.Fuzz(func(t *testing.T, authority string) {
		r := &http.Request{Host: authority, URL: &url.URL{Path: "/"}}
		route, _, _ := routeFor(st, r)
		if route == nil {
			return
		}
		if want := refHost(authority); want != route.Host {
			t.Fatalf("authority %q selects route %q (host %q); it names host %q", authority, route.Name, route.Host, want)
		}
	})
}

// FuzzRouteForTarget: whatever request line and Host header a client
// sends, once net/http has parsed them, the route procmesh picks is the
// one whose host the request names (absolute-form target, else Host, or
// the CONNECT authority), and only an http:// absolute form is forwarded.
func FuzzRouteForTarget(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1", "GET http://echo.test/ HTTP/1.1", "GET http://evil.test@echo.test/ HTTP/1.1",
		"GET http://echo.test@evil.test/ HTTP/1.1", "GET https://echo.test/ HTTP/1.1", "CONNECT echo.test:443 HTTP/1.1",
		"CONNECT [::1]:443 HTTP/1.1", "GET http://%E2%84%AAube.test/ HTTP/1.1", "GET http://ECHO.TEST.:80/x HTTP/1.1",
		"OPTIONS * HTTP/1.1", "GET //echo.test/ HTTP/1.1", "CONNECT /path HTTP/1.1",
	} {
		for _, host := range []string{"echo.test", "kube.test", "evil.test", "[::1]:80"} {
			f.Add(s, host)
		}
	}
	st := fuzzRoutes(f)
	f.Fuzz(func(t *testing.T, requestLine, host string) {
		raw := requestLine + "\r\nHost: " + host + "\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before procmesh sees it
		}
		route, status, msg := routeFor(st, r)
		if route == nil {
			if status == 0 || msg == "" {
				t.Fatalf("%q: no route and no refusal", raw)
			}
			return
		}
		authority := r.Host
		if r.URL.IsAbs() {
			if r.URL.Scheme != "http" {
				t.Fatalf("%q: scheme %q forwarded", raw, r.URL.Scheme)
			}
			authority = r.URL.Host
		}
		if want := refHost(authority); want != route.Host {
			t.Fatalf("%q selects route %q (host %q); it names host %q", raw, route.Name, route.Host, want)
		}
	})
}
