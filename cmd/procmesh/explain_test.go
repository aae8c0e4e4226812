package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// explainConfig names the test process spiffe://example.org/tests, which
// may use echo (tests-to-echo, any request or connection), GET /public/* on
// api with x-env prod, and anything on api under an audit rule being
// retired; db is a tcp route no rule names.
func explainConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := configHead(dir) + `routes:
  - {name: echo, host: echo.test, upstream: "127.0.0.1:1", server_id: spiffe://example.org/echo}
  - {name: api, host: api.test, upstream: "127.0.0.1:2", server_id: spiffe://example.org/api, protocol: http2}
  - {name: db, host: db.test, upstream: "127.0.0.1:3", server_id: spiffe://example.org/db, protocol: tcp}
policy:
  default: deny
  rules:
    - name: tests-to-echo
      from: ["spiffe://example.org/tests"]
      to: [echo]
    - name: tests-read-api
      from: ["spiffe://example.org/*"]
      to: [api]
      methods: [GET]
      paths: ["/public/*"]
      headers: {x-env: prod}
    - name: legacy-api
      from: ["spiffe://example.org/tests"]
      to: [api]
      mode: audit
    - name: others
      from: ["spiffe://example.org/other"]
      to: [api]
`
	path := filepath.Join(dir, "procmesh.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExplainURL decides single requests of the test process as the proxy
// would: normalised path, route by host, matched rule, audit verdict.
func TestExplainURL(t *testing.T) {
	path := explainConfig(t)
	pid := fmt.Sprint(os.Getpid())
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"allowed", []string{"-url", "http://api.test/public/a", "-header", "X-Env: prod"},
			[]string{"connect record on (BPF cgroup/connect_unix at ", "route api (http2, ", "path /public/a\n", "tests-read-api [enforce, ", "matches <- decides",
				"decision allow by tests-read-api"}},
		{"normalised into the audit rule", []string{"-url", "http://API.test/public/%2e%2e/admin", "-header", "x-env: prod"},
			[]string{"legacy-api [audit, ", "path /admin (normalised from /public/%2e%2e/admin; the upstream receives /admin)",
				"tests-read-api [enforce, ", "no: paths do not match", "legacy-api [audit, ", "decision audit by legacy-api",
				"others [enforce, ", "no: caller's ID is not in from"}},
		{"header missing", []string{"-url", "http://api.test/public/a", "-method", "GET"},
			[]string{"no: headers do not match", "decision audit by legacy-api"}},
		{"refused path", []string{"-url", "http://api.test/public/..%2fadmin"},
			[]string{"path refused (400): encoded slash (%2F): upstreams disagree on whether it separates segments"}},
		{"CONNECT", []string{"-url", "http://echo.test:443", "-method", "CONNECT"},
			[]string{"kind connection (CONNECT tunnel)", "decision allow by tests-to-echo"}},
		{"tcp route", []string{"-url", "http://db.test/x"},
			[]string{"kind refused (400): route db speaks tcp", "rules none names route db", "decision deny by default"}},
		{"unknown host", []string{"-url", "http://evil.test/"},
			[]string{`route none: no route has host "evil.test"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(append([]string{"explain", "-config", path, "-pid", pid}, tc.args...)...)
			if code != 0 {
				t.Fatalf("explain exited %d: %s", code, errOut)
			}
			out = squeeze(out)
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestExplainRoutes: without -url, each route shows the connection verdict
// and the rules that may allow requests, with their conditions.
func TestExplainRoutes(t *testing.T) {
	code, out, errOut := run("explain", "-config", explainConfig(t), "-pid", fmt.Sprint(os.Getpid()))
	if code != 0 {
		t.Fatalf("explain exited %d: %s", code, errOut)
	}
	out = squeeze(out)
	for _, want := range []string{"api (http2) connections: audit", "requests: tests-read-api [enforce, ",
		"GET /public/* X-Env=prod", "db (tcp) connections: deny", "echo (http1) connections: allow"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// squeeze turns the table's runs of spaces into one, so that expectations
// do not depend on column widths.
func squeeze(s string) string {
	return regexp.MustCompile(` +`).ReplaceAllString(s, " ")
}

func TestExplainUsage(t *testing.T) {
	path := explainConfig(t)
	for _, args := range [][]string{
		{"-method", "GET"},
		{"-url", "https://api.test/"},
		{"-url", "api.test/x"},
		{"-url", "http://api.test/", "-header", "nocolon"},
	} {
		if code, _, _ := run(append([]string{"explain", "-config", path, "-pid", "1"}, args...)...); code != 2 {
			t.Errorf("explain %v exited %d, want 2", args, code)
		}
	}
}

// TestCheckRules: check refuses unreachable and conflicting rules with the
// rule's FILE:LINE and exits 1.
func TestCheckRules(t *testing.T) {
	path, _ := writeConfig(t, `    - name: shadowed
      from: ["spiffe://example.org/tests"]
      to: [echo]
      methods: [GET]
    - name: audit-copy
      from: ["spiffe://example.org/tests"]
      to: [echo]
      mode: audit
`)
	code, out, errOut := run("check", "-config", path)
	if code != 1 || out != "" {
		t.Fatalf("check exited %d, stdout %q; want 1 and nothing", code, out)
	}
	want := path + `:20: policy.rules[1]: unreachable: every request it matches is decided first by rule "tests-to-echo"; remove it or narrow the earlier rule (policy.rules[0] at line 17)` + "\n" +
		path + `:24: policy.rules[2]: unreachable: every request it matches is decided first by rule "tests-to-echo" (enforce rules are tried before audit-mode rules); remove it or narrow the earlier rule (policy.rules[0] at line 17)` + "\n"
	if errOut != want {
		t.Fatalf("check errors\n got %s\nwant %s", errOut, want)
	}

	good, _ := writeConfig(t, "    - {name: legacy, from: [\"spiffe://example.org/*\"], to: [echo], mode: audit}\n")
	if code, out, errOut := run("check", "-config", good); code != 0 || !strings.Contains(out, "2 policy rules (1 in audit mode), default deny") {
		t.Fatalf("check: exit %d\n%s%s", code, out, errOut)
	}
}

// TestExplainJWTSVIDRoute: explain says a route attaches the caller's
// JWT-SVID, decides without the client's own token field, as the proxy
// does, and refuses CONNECT to it.
func TestExplainJWTSVIDRoute(t *testing.T) {
	dir := t.TempDir()
	cfg := configHead(dir) + `routes:
  - {name: sts, host: sts.test, upstream: "127.0.0.1:1", server_id: spiffe://example.org/sts, jwt_svid: {audience: [https://sts.example]}}
policy:
  rules:
    - {name: tests-to-sts, from: ["spiffe://example.org/tests"], to: [sts]}
`
	path := filepath.Join(dir, "procmesh.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := fmt.Sprint(os.Getpid())
	for args, want := range map[[2]string][]string{
		{"GET", "http://sts.test/x"}:       {"token the caller's JWT-SVID for https://sts.example in Authorization (jwt_svid)", "decision allow by tests-to-sts"},
		{"CONNECT", "http://sts.test:443"}: {"kind refused (403): route sts attaches a JWT-SVID"},
	} {
		code, out, errOut := run("explain", "-config", path, "-pid", pid, "-method", args[0], "-url", args[1], "-header", "Authorization: Bearer forged")
		if code != 0 {
			t.Fatalf("explain exited %d: %s", code, errOut)
		}
		out = squeeze(out)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s %s: output lacks %q:\n%s", args[0], args[1], w, out)
			}
		}
	}
}
