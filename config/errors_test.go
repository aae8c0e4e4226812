package config

import (
	"errors"
	"strings"
	"testing"
)

// parseErr parses src as "test.yaml" and returns the error text; it fails
// the test if Parse accepted the file or returned something else than *Error.
func parseErr(t *testing.T, src string) string {
	t.Helper()
	c, err := Parse("test.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s", src)
	}
	if c != nil {
		t.Fatal("Parse returned a config along with an error")
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Parse error %T %v; want *Error", err, err)
	}
	return err.Error()
}

// route is a valid route for cases that change something else; its
// server_id's trust domain is example.org, which needs no trust bundle.
const route = "routes:\n  - {name: echo, host: echo.test, upstream: \"127.0.0.1:8443\", server_id: spiffe://example.org/echo}\n"

// TestParseErrors compares the exact message of each class of error.
func TestParseErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		// File-level.
		{"empty file", "", "test.yaml: file is empty; start from configs/example.yaml (trust_domain is required)"},
		{"comments only", "# nothing\n", "test.yaml: file has no settings, only comments; start from configs/example.yaml (trust_domain is required)"},
		{"YAML syntax", "trust_domain: example.org\nlisten: [\n", "test.yaml:2: invalid YAML: did not find expected node content"},
		{"two documents", "trust_domain: example.org\n---\ntrust_domain: example.org\n", "test.yaml:2: a second YAML document starts here; put all settings in one document (remove the '---')"},
		{"not a mapping", "- trust_domain\n", "test.yaml:1: expected a mapping (key: value lines), got a list"},
		{"missing trust_domain", "listen: {}\n", `test.yaml:1: missing required key "trust_domain" (the trust domain of this node's workloads, like example.org)`},

		// Keys.
		{"unknown key top", "trust_domain: example.org\nlisten_on: x\n", `test.yaml:2: unknown key "listen_on" at top level (known: trust_domain, listen, identity, cache, attest, trust_bundles, workloads, routes, policy, limits, upstream, reload, shutdown, runtime, log, inbound, admin)`},
		{"unknown key nested", "trust_domain: example.org\nlisten:\n  socket: /run/x.sock\n  foo: 1\n", `test.yaml:4: unknown key "foo" in listen (known: socket, mode, group, workload_api, workload_api_ids)`},
		{"unknown key deeper", "trust_domain: example.org\nidentity:\n  ca:\n    chain: /x\n", `test.yaml:4: unknown key "chain" in identity.ca (known: cert, key)`},
		{"unknown key in list item", "trust_domain: example.org\n" + route + "  - {name: b, host: b.test, upstream: \"127.0.0.1:1\", server_id: spiffe://example.org/b, tls: true}\n",
			`test.yaml:4: unknown key "tls" in routes[1] (known: name, host, upstream, server_id, server_trust_domain, protocol, alpn, socket, socket_mode, jwt_svid, preconnect)`},
		{"duplicate key", "trust_domain: example.org\nlisten:\n  mode: \"0660\"\n  mode: \"0600\"\n", `test.yaml:4: duplicate key "mode" in listen (first at line 3)`},
		{"alias", "trust_domain: &td example.org\nlisten: {group: *td}\n", "test.yaml:2: listen.group: aliases (*td) are not supported; write the value out"},
		{"merge key", "trust_domain: example.org\nlisten:\n  <<: {mode: \"0600\"}\n", "test.yaml:3: listen: keys must be plain names; anchors, aliases and merge keys (<<) are not supported"},
		{"missing key in item", "trust_domain: example.org\nroutes:\n  - name: echo\n    host: echo.test\n    server_id: spiffe://example.org/echo\n",
			`test.yaml:3: routes[0]: missing required key "upstream" (host:port to connect to, like 127.0.0.1:8443)`},
		{"empty required value", "trust_domain: \"\"\n", `test.yaml:1: trust_domain: empty; this key is required (the trust domain of this node's workloads, like example.org)`},
		{"workload_api on listen.socket", "trust_domain: example.org\nlisten:\n  workload_api: /run/procmesh/egress.sock\n  workload_api_ids: [spiffe://example.org/*]\n",
			"test.yaml:3: listen.workload_api: /run/procmesh/egress.sock is already listen.socket; give the Workload API a socket of its own, like /run/procmesh/workload.sock"},
		{"workload_api without ids", "trust_domain: example.org\nlisten:\n  workload_api: /run/procmesh/workload.sock\n",
			"test.yaml:3: listen.workload_api: the Workload API hands each caller its private key, so list in listen.workload_api_ids the SPIFFE IDs (or prefixes like spiffe://example.org/team/*) whose processes may fetch theirs; spiffe://example.org/* allows every identity of the trust domain"},
		{"workload_api_ids bad", "trust_domain: example.org\nlisten: {workload_api: /run/w.sock, workload_api_ids: [\"spiffe://example.org/a*\"]}\n",
			`test.yaml:2: listen.workload_api_ids[0]: "spiffe://example.org/a*": * is only allowed as the whole last segment, like spiffe://example.org/team-a/*`},
		{"workload_api relative", "trust_domain: example.org\nlisten: {workload_api: workload.sock}\n",
			`test.yaml:2: listen.workload_api: "workload.sock" is not an absolute path; write it like /run/procmesh/egress.sock`},
		{"empty list item", "trust_domain: example.org\nworkloads:\n  -\n", "test.yaml:3: workloads[0]: empty item; remove the lone '-' or fill it in"},

		// Types.
		{"mapping expected", "trust_domain: example.org\nlisten: /run/x.sock\n", `test.yaml:2: listen: expected a mapping (key: value lines), got string "/run/x.sock"`},
		{"list expected", "trust_domain: example.org\nworkloads: {spiffe_id: spiffe://example.org/a}\n", "test.yaml:2: workloads: expected a list, got a mapping"},
		{"string expected", "trust_domain: [example.org]\n", "test.yaml:1: trust_domain: expected a string, got a list"},
		{"number for string", "trust_domain: example.org\nlisten: {group: 1000}\n", `test.yaml:2: listen.group: expected a string, got integer 1000; quote it: "1000"`},
		{"integer expected", "trust_domain: example.org\ncache: {max_processes: lots}\n", `test.yaml:2: cache.max_processes: expected an integer, got string "lots"`},
		{"integer bounds", "trust_domain: example.org\ncache: {max_processes: 0}\n", "test.yaml:2: cache.max_processes: 0 is not between 1 and 1000000"},

		// Durations.
		{"bad duration", "trust_domain: example.org\nidentity: {svid_ttl: 1 hour}\n", `test.yaml:2: identity.svid_ttl: "1 hour" is not a duration; write it like 90s, 5m or 1h30m`},
		{"duration without unit", "trust_domain: example.org\ncache: {ttl: 300}\n", "test.yaml:2: cache.ttl: expected a duration like 1s, got integer 300; durations need a unit (s, m, h)"},
		{"duration too short", "trust_domain: example.org\nidentity: {svid_ttl: 30s}\n", "test.yaml:2: identity.svid_ttl: 30s is below the minimum of 1m"},
		{"duration too long", "trust_domain: example.org\nidentity: {svid_ttl: 48h}\n", "test.yaml:2: identity.svid_ttl: 48h is above the maximum of 24h"},

		// Modes.
		{"non-octal mode", "trust_domain: example.org\nlisten: {mode: \"0680\"}\n", `test.yaml:2: listen.mode: "0680" is not an octal file mode; write four octal digits, like "0660"`},
		{"three-digit mode", "trust_domain: example.org\nlisten: {mode: \"660\"}\n", `test.yaml:2: listen.mode: "660" is not an octal file mode; write four octal digits, like "0660"`},
		{"unquoted mode", "trust_domain: example.org\nlisten: {mode: 0660}\n", `test.yaml:2: listen.mode: write the mode quoted, like "0660"; unquoted, YAML reads 0660 as a number, not a mode`},
		{"unwritable mode", "trust_domain: example.org\nlisten: {mode: \"0444\"}\n", `test.yaml:2: listen.mode: "0444" is writable by no one, so no process could connect; use "0660"`},

		// Paths and enumerations.
		{"ca cert without key", "trust_domain: example.org\nidentity:\n  ca:\n    cert: /etc/ca.pem\n", "test.yaml:4: identity.ca: set both cert and key (operator CA) or neither (CA generated under state_dir)"},
		{"relative path", "trust_domain: example.org\nidentity: {state_dir: state}\n", `test.yaml:2: identity.state_dir: "state" is not an absolute path; write it like /var/lib/procmesh`},
		{"socket path too long", "trust_domain: example.org\nlisten: {socket: /" + strings.Repeat("s", 107) + "}\n", "test.yaml:2: listen.socket: socket path is 108 bytes; Unix socket paths are limited to 107"},
		{"provider", "trust_domain: example.org\nidentity: {provider: vault}\n", `test.yaml:2: identity.provider: "vault" is not one of builtin, spire`},
		{"spire with workloads", "trust_domain: example.org\nidentity: {provider: spire}\nworkloads:\n  - {spiffe_id: spiffe://example.org/a, selectors: [\"unix:uid:1\"]}\n",
			`test.yaml:4: workloads: identity.provider is spire: registration entries live in SPIRE (spire-server entry create); remove the workloads section (policy stays here)`},
		{"spire timeout", "trust_domain: example.org\nidentity: {provider: spire, spire: {first_answer_timeout: 1ms}}\n", `test.yaml:2: identity.spire.first_answer_timeout: 1ms is below the minimum of 100ms`},
		{"protocol", "trust_domain: example.org\nroutes:\n  - {name: echo, host: echo.test, upstream: \"127.0.0.1:1\", server_id: spiffe://example.org/e, protocol: h2}\n",
			`test.yaml:3: routes[0].protocol: "h2" is not one of tcp, http1, http2, http3, auto`},
		{"policy default", "trust_domain: example.org\npolicy: {default: permit}\n", `test.yaml:2: policy.default: "permit" is not one of allow, deny`},
		{"log level", "trust_domain: example.org\nlog: {level: verbose}\n", `test.yaml:2: log.level: "verbose" is not one of trace, debug, info, warn, error`},

		// Trust domains and SPIFFE IDs (THREATS I9, more in TestThreat_I9_NonCanonicalIDInConfig).
		{"trust domain uppercase", "trust_domain: Example.org\n", `test.yaml:1: trust_domain: "Example.org" is not a trust domain name: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores; write it as example.org`},
		{"trust domain as ID", "trust_domain: spiffe://example.org\n", `test.yaml:1: trust_domain: "spiffe://example.org" is a SPIFFE ID; write the trust domain name alone, like example.org`},
		{"ID uppercase trust domain", "trust_domain: example.org\nworkloads:\n  - {spiffe_id: spiffe://Example.org/x, selectors: [unix:uid:1]}\n",
			`test.yaml:3: workloads[0].spiffe_id: "spiffe://Example.org/x" is not a canonical SPIFFE ID: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores; write it as spiffe://example.org/x`},
		{"ID dot segments", "trust_domain: example.org\nworkloads:\n  - {spiffe_id: spiffe://example.org/a/../b, selectors: [unix:uid:1]}\n",
			`test.yaml:3: workloads[0].spiffe_id: "spiffe://example.org/a/../b" is not a canonical SPIFFE ID: path cannot contain dot segments`},
		{"ID without path", "trust_domain: example.org\nworkloads:\n  - {spiffe_id: spiffe://example.org, selectors: [unix:uid:1]}\n",
			"test.yaml:3: workloads[0].spiffe_id: spiffe://example.org names a trust domain, not a workload; add a path, like spiffe://example.org/billing"},

		// Selectors.
		{"selector", "trust_domain: example.org\nworkloads:\n  - spiffe_id: spiffe://example.org/a\n    selectors:\n      - unix:uid:1000\n      - unix:uid:bob\n",
			`test.yaml:6: workloads[0].selectors[1]: "unix:uid:bob": uid must be a decimal number without leading zeros, like unix:uid:1000; use unix:user:bob for a user name`},
		{"no selectors", "trust_domain: example.org\nworkloads:\n  - {spiffe_id: spiffe://example.org/a, selectors: []}\n",
			"test.yaml:3: workloads[0].selectors: empty; an entry without selectors would match every process"},
		{"contradicting selectors", "trust_domain: example.org\nworkloads:\n  - {spiffe_id: spiffe://example.org/a, selectors: [unix:uid:1, unix:uid:2]}\n",
			`test.yaml:3: workloads[0]: can never match: a process has one unix:uid, and the entry asks for both "1" and "2"`},

		// Routes.
		{"upstream not host:port", "trust_domain: example.org\nroutes:\n  - {name: echo, host: echo.test, upstream: x, server_id: spiffe://example.org/e}\n",
			`test.yaml:3: routes[0].upstream: "x" is not host:port; write it as 127.0.0.1:8443`},
		{"upstream port", "trust_domain: example.org\nroutes:\n  - {name: echo, host: echo.test, upstream: \"h:70000\", server_id: spiffe://example.org/e}\n",
			`test.yaml:3: routes[0].upstream: port "70000" of "h:70000" is not a number between 1 and 65535`},
		{"route name", "trust_domain: example.org\nroutes:\n  - {name: Echo_1, host: echo.test, upstream: \"h:1\", server_id: spiffe://example.org/e}\n",
			`test.yaml:3: routes[0].name: "Echo_1" is not a valid route name; use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit, like "echo"`},
		{"host uppercase", "trust_domain: example.org\nroutes:\n  - {name: echo, host: Echo.Test, upstream: \"h:1\", server_id: spiffe://example.org/e}\n",
			`test.yaml:3: routes[0].host: "Echo.Test" must be lowercase; write it as echo.test`},
		{"host with port", "trust_domain: example.org\nroutes:\n  - {name: echo, host: \"echo.test:80\", upstream: \"h:1\", server_id: spiffe://example.org/e}\n",
			`test.yaml:3: routes[0].host: "echo.test:80" has a port; host is the name clients use, without port (the port belongs in upstream)`},
		{"no server identity", "trust_domain: example.org\nroutes:\n  - {name: echo, host: echo.test, upstream: \"h:1\"}\n",
			"test.yaml:3: routes[0]: set server_id (the one SPIFFE ID the upstream must present) or server_trust_domain (accept any ID of that trust domain)"},
		{"server id outside server trust domain", "trust_domain: example.org\nroutes:\n  - {name: echo, host: echo.test, upstream: \"h:1\", server_id: spiffe://example.org/e, server_trust_domain: other.test}\n",
			"test.yaml:3: routes[0].server_id: spiffe://example.org/e is not in server_trust_domain other.test; keep only one of the two"},
		{"missing trust bundle", "trust_domain: example.org\nroutes:\n  - {name: echo, host: echo.test, upstream: \"h:1\", server_id: spiffe://upstream.test/echo}\n",
			"test.yaml:3: routes[0].server_id: no trust bundle for trust domain upstream.test; add to trust_bundles: {trust_domain: upstream.test, file: /etc/procmesh/upstream.test.pem}"},
		{"missing trust bundle for trust domain", "trust_domain: example.org\nroutes:\n  - {name: echo, host: echo.test, upstream: \"h:1\", server_trust_domain: upstream.test}\n",
			"test.yaml:3: routes[0].server_trust_domain: no trust bundle for trust domain upstream.test; add to trust_bundles: {trust_domain: upstream.test, file: /etc/procmesh/upstream.test.pem}"},
		{"socket needs tcp", "trust_domain: example.org\nroutes:\n  - {name: db, host: db.test, upstream: \"h:1\", server_id: spiffe://example.org/db, socket: /run/db.sock}\n",
			"test.yaml:3: routes[0].socket: a route socket carries raw bytes and needs protocol: tcp (this route is http1); set protocol: tcp or remove socket"},
		{"preconnect needs http1", "trust_domain: example.org\nroutes:\n  - {name: db, host: db.test, upstream: \"h:1\", server_id: spiffe://example.org/db, protocol: http2, preconnect: 1}\n",
			"test.yaml:3: routes[0].preconnect: preconnections serve the HTTP/1.1 fast path and this route is http2; set protocol: http1 or remove preconnect"},
		{"preconnect range", "trust_domain: example.org\nroutes:\n  - {name: db, host: db.test, upstream: \"h:1\", server_id: spiffe://example.org/db, preconnect: 17}\n",
			"test.yaml:3: routes[0].preconnect: 17 is not between 0 and 16"},
		{"socket_mode needs socket", "trust_domain: example.org\nroutes:\n  - {name: db, host: db.test, upstream: \"h:1\", server_id: spiffe://example.org/db, socket_mode: \"0600\"}\n",
			"test.yaml:3: routes[0].socket_mode: set without socket; socket_mode is the mode of the route's own socket"},
		{"socket clash", "trust_domain: example.org\nlisten: {socket: /run/p.sock}\nroutes:\n  - {name: db, host: db.test, upstream: \"h:1\", server_id: spiffe://example.org/db, protocol: tcp, socket: /run/./p.sock}\n",
			"test.yaml:4: routes[0].socket: /run/p.sock is already used by listen.socket"},
		{"socket clash workload_api", "trust_domain: example.org\nlisten: {workload_api: /run/w.sock, workload_api_ids: [spiffe://example.org/*]}\nroutes:\n  - {name: db, host: db.test, upstream: \"h:1\", server_id: spiffe://example.org/db, protocol: tcp, socket: /run/w.sock}\n",
			"test.yaml:4: routes[0].socket: /run/w.sock is already used by listen.workload_api"},
		{"duplicate route name", "trust_domain: example.org\n" + route + "  - {name: echo, host: b.test, upstream: \"h:1\", server_id: spiffe://example.org/b}\n",
			`test.yaml:4: routes[1].name: "echo" is already the name of routes[0] (line 3)`},
		{"duplicate host", "trust_domain: example.org\n" + route + "  - {name: b, host: echo.test, upstream: \"h:1\", server_id: spiffe://example.org/b}\n",
			"test.yaml:4: routes[1].host: echo.test is already the host of routes[0] (line 3)"},

		// Trust bundles.
		{"bundle for own trust domain", "trust_domain: example.org\ntrust_bundles:\n  - {trust_domain: example.org, file: /x.pem}\n",
			"test.yaml:3: trust_bundles[0].trust_domain: example.org is this node's own trust_domain; its bundle comes from procmesh's CA (identity), remove this entry"},
		{"duplicate bundle", "trust_domain: example.org\ntrust_bundles:\n  - {trust_domain: u.test, file: /x.pem}\n  - {trust_domain: u.test, file: /y.pem}\n",
			"test.yaml:4: trust_bundles[1].trust_domain: u.test already has a bundle at trust_bundles[0] (line 3); put all its CA certificates in one PEM file"},

		// Workloads and policy.
		{"workload in other trust domain", "trust_domain: example.org\nworkloads:\n  - {spiffe_id: spiffe://other.org/a, selectors: [unix:uid:1]}\n",
			"test.yaml:3: workloads[0].spiffe_id: spiffe://other.org/a is not in trust_domain example.org; processes on this node get IDs of their own trust domain"},
		{"rule to unknown route", "trust_domain: example.org\n" + route + "policy:\n  rules:\n    - {from: [spiffe://example.org/a], to: [echo, ech0]}\n",
			`test.yaml:6: policy.rules[0].to[1]: no route named "ech0" (routes: echo)`},
		{"rule to route without routes", "trust_domain: example.org\npolicy:\n  rules:\n    - {from: [spiffe://example.org/a], to: [echo]}\n",
			`test.yaml:4: policy.rules[0].to[0]: no route named "echo" (no routes are defined)`},
		{"rule from other trust domain", "trust_domain: example.org\n" + route + "policy:\n  rules:\n    - {from: [spiffe://other.org/a], to: [echo]}\n",
			"test.yaml:6: policy.rules[0].from[0]: spiffe://other.org/a is not in trust_domain example.org; rules name callers on this node, whose IDs are in trust_domain"},
		{"rule unknown key", "trust_domain: example.org\n" + route + "policy:\n  rules:\n    - {from: [spiffe://example.org/a], to: [echo], action: deny}\n",
			`test.yaml:6: unknown key "action" in policy.rules[0] (known: name, from, selectors, to, methods, paths, headers, mode)`},
		{"rule empty to", "trust_domain: example.org\npolicy:\n  rules:\n    - {from: [spiffe://example.org/a], to: []}\n",
			"test.yaml:4: policy.rules[0].to: empty; list the route names this rule allows"},
		{"duplicate rule name", "trust_domain: example.org\n" + route + "policy:\n  rules:\n    - {name: r, from: [spiffe://example.org/a], to: [echo]}\n    - {name: r, from: [spiffe://example.org/b], to: [echo]}\n",
			`test.yaml:7: policy.rules[1].name: "r" is already the name of policy.rules[0] (line 6)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseErr(t, tc.src); got != tc.want {
				t.Fatalf("error\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestParseCollectsAllProblems: one run reports every problem of the file,
// each on its own line and in file order, each a Problem with its line.
func TestParseCollectsAllProblems(t *testing.T) {
	src := "trust_domain: example.org\n" +
		"log: {level: loud}\n" +
		"listen:\n  mode: \"0444\"\n  sock: /x\n" +
		"identity: {svid_ttl: forever}\n"
	_, err := Parse("test.yaml", []byte(src))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v; want *Error", err)
	}
	want := []Problem{
		{"test.yaml", 2, "log.level", `"loud" is not one of trace, debug, info, warn, error`},
		{"test.yaml", 4, "listen.mode", `"0444" is writable by no one, so no process could connect; use "0660"`},
		{"test.yaml", 5, "", `unknown key "sock" in listen (known: socket, mode, group, workload_api, workload_api_ids)`},
		{"test.yaml", 6, "identity.svid_ttl", `"forever" is not a duration; write it like 90s, 5m or 1h30m`},
	}
	if len(ce.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ce.Problems), len(want), err)
	}
	for i := range want {
		if ce.Problems[i] != want[i] {
			t.Errorf("problem %d\n got %+v\nwant %+v", i, ce.Problems[i], want[i])
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Fatalf("Error() has %d lines, want %d", len(lines), len(want))
	}
	var p Problem
	if !errors.As(err, &p) || p.Line != 2 {
		t.Fatalf("errors.As(Problem) = %+v", p)
	}
}

// TestProblemFormat covers problems without file, line or key.
func TestProblemFormat(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{"f.yaml", 3, "a.b", "bad"}, "f.yaml:3: a.b: bad"},
		{Problem{"f.yaml", 0, "", "bad"}, "f.yaml: bad"},
		{Problem{"", 3, "a", "bad"}, "line 3: a: bad"},
		{Problem{"", 0, "", "bad"}, "bad"},
	}
	for _, tc := range tests {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q; want %q", tc.p, got, tc.want)
		}
	}
}
