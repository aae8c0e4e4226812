package config

import (
	"testing"
	"time"

	"github.com/procmesh/procmesh/internal/units"
)

// TestLimitErrors compares the exact message for each class of bad limit.
func TestLimitErrors(t *testing.T) {
	const head = "trust_domain: example.org\n"
	tests := []struct{ name, src, want string }{
		{"copy buffer below", head + "upstream: {copy_buffer_size: 1KiB}\n",
			"test.yaml:2: upstream.copy_buffer_size: 1KiB is not between 4KiB and 1MiB"},
		{"gc percent", head + "runtime: {gc_percent: 5}\n",
			"test.yaml:2: runtime.gc_percent: 5 is not between 10 and 10000"},
		{"memory limit small", head + "runtime: {memory_limit: 1MiB}\n",
			"test.yaml:2: runtime.memory_limit: 1MiB is not between 16MiB and 1TiB (0 turns it off)"},
		{"size below", head + "limits: {max_request_header_bytes: 100}\n",
			"test.yaml:2: limits.max_request_header_bytes: 100 is not between 1KiB and 8MiB"},
		{"size above", head + "limits: {max_response_header_bytes: 16MiB}\n",
			"test.yaml:2: limits.max_response_header_bytes: 16MiB is not between 1KiB and 8MiB"},
		{"size zero not off", head + "limits: {max_request_header_bytes: 0}\n",
			"test.yaml:2: limits.max_request_header_bytes: 0 is not between 1KiB and 8MiB"},
		{"size decimal unit", head + "limits: {max_request_header_bytes: 60KB}\n",
			`test.yaml:2: limits.max_request_header_bytes: "60KB" is not a size: use the binary units KiB, MiB, GiB or TiB, spelt so (1KiB = 1024 bytes)`},
		{"size lower-case unit", head + "limits: {max_request_header_bytes: 60kib}\n",
			`test.yaml:2: limits.max_request_header_bytes: "60kib" is not a size: use the binary units KiB, MiB, GiB or TiB, spelt so (1KiB = 1024 bytes)`},
		{"size unknown unit", head + "limits: {max_request_body_bytes: 3 pages}\n",
			`test.yaml:2: limits.max_request_body_bytes: "3 pages" is not a size: unknown unit "pages"; use B, KiB, MiB, GiB or TiB`},
		{"size fraction", head + "limits: {max_request_body_bytes: 1.5MiB}\n",
			`test.yaml:2: limits.max_request_body_bytes: "1.5MiB" is not a size: unknown unit ".5MiB"; use B, KiB, MiB, GiB or TiB`},
		{"size no digits", head + "limits: {max_request_body_bytes: MiB}\n",
			`test.yaml:2: limits.max_request_body_bytes: "MiB" is not a size: write a whole number of bytes, or one with a unit: B, KiB, MiB, GiB, TiB`},
		{"size negative", head + "limits: {max_request_body_bytes: -1}\n",
			"test.yaml:2: limits.max_request_body_bytes: -1 is not a size; write bytes in decimal, or with a unit like \"64KiB\""},
		{"size hex", head + "limits: {max_request_body_bytes: 0x10}\n",
			"test.yaml:2: limits.max_request_body_bytes: 0x10 is not a size; write bytes in decimal, or with a unit like \"64KiB\""},
		{"size huge", head + "limits: {max_request_body_bytes: 99999999999TiB}\n",
			`test.yaml:2: limits.max_request_body_bytes: "99999999999TiB" is not a size: too large`},
		{"size off-able above", head + "limits: {max_request_body_bytes: 2TiB}\n",
			"test.yaml:2: limits.max_request_body_bytes: 2TiB is not between 1 and 1TiB (0 turns it off)"},
		{"size kind", head + "limits: {max_request_body_bytes: [1]}\n",
			`test.yaml:2: limits.max_request_body_bytes: expected a size, like 65536 or "64KiB", got a list`},
		{"count", head + "limits: {max_request_headers: 0}\n", "test.yaml:2: limits.max_request_headers: 0 is not between 1 and 10000"},
		{"duration below", head + "limits: {header_read_timeout: 500ms}\n", "test.yaml:2: limits.header_read_timeout: 500ms is below the minimum of 1s"},
		{"duration cannot be off", head + "limits: {idle_timeout: 0s}\n", "test.yaml:2: limits.idle_timeout: 0s is below the minimum of 1s"},
		{"off-able duration below", head + "limits: {request_timeout: 10ms}\n",
			"test.yaml:2: limits.request_timeout: 10ms is below the minimum of 1s (0s turns it off)"},
		{"off-able duration above", head + "upstream: {response_header_timeout: 2h}\n",
			"test.yaml:2: upstream.response_header_timeout: 2h is above the maximum of 1h"},
		{"connect timeout", head + "upstream: {connect_timeout: 50ms}\n", "test.yaml:2: upstream.connect_timeout: 50ms is below the minimum of 100ms"},
		{"unknown key in quic", head + "upstream:\n  quic:\n    max_streams: 5\n",
			`test.yaml:4: unknown key "max_streams" in upstream.quic (known: max_incoming_streams, idle_timeout, keep_alive_period, max_stream_receive_window, max_connection_receive_window)`},
		{"quic window", head + "upstream: {quic: {max_stream_receive_window: 32KiB}}\n",
			"test.yaml:2: upstream.quic.max_stream_receive_window: 32KiB is not between 64KiB and 1GiB"},
		{"boolean string", head + "reload: {watch: \"yes\"}\n",
			`test.yaml:2: reload.watch: expected true or false, got string "yes"; write true or false, unquoted`},
		{"boolean kind", head + "reload: {watch: 1}\n", "test.yaml:2: reload.watch: expected true or false, got integer 1"},
		{"header to remove not a name", head + "upstream: {request_headers_to_remove: [\"X-A: b\"]}\n",
			`test.yaml:2: upstream.request_headers_to_remove[0]: "X-A: b" is not a header field name; write the name alone, like X-Forwarded-Client-Cert`},
		{"header to remove always handled", head + "upstream: {request_headers_to_remove: [x-forwarded-for]}\n",
			"test.yaml:2: upstream.request_headers_to_remove[0]: X-Forwarded-For is a hop-by-hop, framing or Forwarded field, which procmesh always removes or writes itself; leave it out"},
		{"header to remove twice", head + "upstream:\n  request_headers_to_remove:\n    - X-Real-IP\n    - x-real-ip\n",
			"test.yaml:5: upstream.request_headers_to_remove[1]: X-Real-Ip is listed twice (header names are case-insensitive)"},
		{"headers to remove kind", head + "upstream: {request_headers_to_remove: X-Real-IP}\n",
			"test.yaml:2: upstream.request_headers_to_remove: expected a list, got string \"X-Real-IP\""},
		{"debounce", head + "reload: {debounce: 1ms}\n", "test.yaml:2: reload.debounce: 1ms is below the minimum of 10ms"},
		{"drain", head + "shutdown: {drain_timeout: 2h}\n", "test.yaml:2: shutdown.drain_timeout: 2h is above the maximum of 1h"},
		{"flush interval below", head + "log: {flush_interval: 500us}\n",
			"test.yaml:2: log.flush_interval: 500us is below the minimum of 1ms (0s turns it off)"},
		{"flush interval above", head + "log: {flush_interval: 2m}\n", "test.yaml:2: log.flush_interval: 2m is above the maximum of 1m"},
		{"flush interval unitless", head + "log: {flush_interval: 5}\n",
			"test.yaml:2: log.flush_interval: expected a duration like 1ms, got integer 5; durations need a unit (s, m, h)"},
		{"flush interval kind", head + "log: {flush_interval: [1s]}\n", "test.yaml:2: log.flush_interval: expected a string, got a list"},

		// Relations, checked by Validate after defaults.
		{"per identity above total", head + "limits:\n  max_connections: 500\n",
			"test.yaml:3: limits.max_connections_per_identity: 1000 is above limits.max_connections (500); one identity could never use them all"},
		{"unattested per uid not below total", head + "limits:\n  max_connections: 64\n  max_connections_per_identity: 10\n",
			"test.yaml:3: limits.max_unattested_connections_per_uid: 64 is not below limits.max_connections (64); the unregistered processes of one uid could take every connection"},
		{"keep-alive not below idle", head + "upstream:\n  quic:\n    idle_timeout: 10s\n",
			"test.yaml:4: upstream.quic.keep_alive_period: 15s is not below upstream.quic.idle_timeout (10s); the connection would time out between keep-alives"},
		{"stream window above connection window", head + "upstream:\n  quic: {max_connection_receive_window: 4MiB}\n",
			"test.yaml:3: upstream.quic.max_stream_receive_window: 6MiB is above upstream.quic.max_connection_receive_window (4MiB); one stream could never use it"},

		// Routes.
		{"alpn h3", head + "routes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: spiffe://example.org/e, alpn: [h2, h3]}\n",
			"test.yaml:3: routes[0].alpn[1]: h3 runs over QUIC, not over a TCP tunnel or socket; use protocol: http3 for HTTP/3"},
		{"alpn twice", head + "routes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: spiffe://example.org/e, alpn: [h2, h2]}\n",
			`test.yaml:3: routes[0].alpn[1]: "h2" is listed twice`},
		{"alpn empty", head + "routes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: spiffe://example.org/e, alpn: [\"\"]}\n",
			`test.yaml:3: routes[0].alpn[0]: "" is not an ALPN protocol ID; use 1-255 printable characters, like h2 or http/1.1`},
		{"alpn space", head + "routes:\n  - {name: e, host: e.test, upstream: \"h:1\", server_id: spiffe://example.org/e, alpn: [\"h 2\"]}\n",
			`test.yaml:3: routes[0].alpn[0]: "h 2" is not an ALPN protocol ID; use 1-255 printable characters, like h2 or http/1.1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseErr(t, tc.src); got != tc.want {
				t.Fatalf("error\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestLimitValues: the accepted spellings of sizes, and the values that
// mean "off".
func TestLimitValues(t *testing.T) {
	src := "trust_domain: example.org\nlimits:\n  max_request_header_bytes: 1024\n  max_response_header_bytes: \"2048B\"\n" +
		"  max_request_body_bytes: 1TiB\n  request_timeout: 0s\nupstream:\n  response_header_timeout: 0s\n  quic:\n" +
		"    max_stream_receive_window: 1GiB\n    max_connection_receive_window: 1GiB\nreload: {watch: true}\n"
	c, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	l, u := c.Limits, c.Upstream
	if l.MaxRequestHeaderBytes != 1024 || l.MaxResponseHeaderBytes != 2048 || l.MaxRequestBodyBytes != 1<<40 ||
		l.RequestTimeout != 0 || u.ResponseHeaderTimeout != 0 || u.QUIC.MaxStreamReceiveWindow != 1<<30 ||
		u.QUIC.MaxConnectionReceiveWindow != 1<<30 || !c.Reload.Watch {
		t.Fatalf("limits %+v upstream %+v reload %+v", l, u, c.Reload)
	}
	c, err = Parse("test.yaml", []byte("trust_domain: example.org\nlimits: {request_timeout: 90s, max_request_body_bytes: 0}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.RequestTimeout != 90*time.Second || c.Limits.MaxRequestBodyBytes != 0 {
		t.Fatalf("limits %+v", c.Limits)
	}
	// An empty list of headers to remove is not the default list.
	c, err = Parse("test.yaml", []byte("trust_domain: example.org\nupstream: {request_headers_to_remove: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Upstream.RequestHeadersToRemove; h == nil || len(h) != 0 {
		t.Fatalf("request_headers_to_remove: [] gave %#v", h)
	}
}

// TestLogFlushInterval: absent or empty means the default, 0s writes every
// line at once.
func TestLogFlushInterval(t *testing.T) {
	for src, want := range map[string]time.Duration{
		"":                              DefaultLogFlushInterval,
		"log: {flush_interval: }\n":     DefaultLogFlushInterval,
		"log: {flush_interval: \"\"}\n": DefaultLogFlushInterval,
		"log: {flush_interval: 0s}\n":   0,
		"log: {flush_interval: 2s}\n":   2 * time.Second,
	} {
		c, err := Parse("test.yaml", []byte("trust_domain: example.org\n"+src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.Log.FlushInterval != want {
			t.Errorf("%q: flush interval %v, want %v", src, c.Log.FlushInterval, want)
		}
	}
}

func TestFmtSize(t *testing.T) {
	for v, want := range map[int64]string{0: "0", 100: "100", 1024: "1KiB", 1536: "1536", 61440: "60KiB", 6 << 20: "6MiB", 3 << 30: "3GiB"} {
		if got := units.FormatSize(v); got != want {
			t.Errorf("units.FormatSize(%d) = %q; want %q", v, got, want)
		}
	}
}
