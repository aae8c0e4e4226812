package config

import (
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/procmesh/procmesh/internal/units"
)

// Decoding of limits, upstream and upstream.quic, and the byte sizes and
// switchable durations they use. Bounds are in the Limits, Upstream and
// QUIC field comments and in configs/example.yaml.

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
)

func (w *walker) limits(n *yaml.Node, l *Limits) {
	f, ok := w.mapping(n, "limits", keys("limits")...)
	if !ok {
		return
	}
	l.Line = f.line
	l.MaxRequestHeaderBytes, _ = w.size(f.get("max_request_header_bytes"), f.key("max_request_header_bytes"), kib, 8*mib, false)
	l.MaxRequestHeaders, _ = w.integer(f.get("max_request_headers"), f.key("max_request_headers"), 1, 10000)
	l.MaxResponseHeaderBytes, _ = w.size(f.get("max_response_header_bytes"), f.key("max_response_header_bytes"), kib, 8*mib, false)
	l.MaxResponseHeaders, _ = w.integer(f.get("max_response_headers"), f.key("max_response_headers"), 1, 10000)
	l.HeaderReadTimeout, _ = w.duration(f.get("header_read_timeout"), f.key("header_read_timeout"), time.Second, 10*time.Minute)
	l.IdleTimeout, _ = w.duration(f.get("idle_timeout"), f.key("idle_timeout"), time.Second, 24*time.Hour)
	l.RequestTimeout, _ = w.durationOrOff(f.get("request_timeout"), f.key("request_timeout"), time.Second, 24*time.Hour)
	l.StreamIdleTimeout, _ = w.duration(f.get("stream_idle_timeout"), f.key("stream_idle_timeout"), time.Second, 24*time.Hour)
	l.MaxConcurrentStreams, _ = w.integer(f.get("max_concurrent_streams"), f.key("max_concurrent_streams"), 1, 10000)
	l.MaxConnections, _ = w.integer(f.get("max_connections"), f.key("max_connections"), 1, 1_000_000)
	l.MaxConnectionsPerIdentity, _ = w.integer(f.get("max_connections_per_identity"), f.key("max_connections_per_identity"), 1, 1_000_000)
	l.MaxUnattestedConnectionsPerUID, _ = w.integer(f.get("max_unattested_connections_per_uid"), f.key("max_unattested_connections_per_uid"), 1, 1_000_000)
	l.MaxRequestBodyBytes, _ = w.size(f.get("max_request_body_bytes"), f.key("max_request_body_bytes"), 1, tib, true)
}

func (w *walker) upstream(n *yaml.Node, u *Upstream) {
	f, ok := w.mapping(n, "upstream", keys("upstream")...)
	if !ok {
		return
	}
	u.ConnectTimeout, _ = w.duration(f.get("connect_timeout"), f.key("connect_timeout"), 100*time.Millisecond, 5*time.Minute)
	u.IdleTimeout, _ = w.duration(f.get("idle_timeout"), f.key("idle_timeout"), time.Second, 24*time.Hour)
	u.MaxIdlePerPool, _ = w.integer(f.get("max_idle_per_pool"), f.key("max_idle_per_pool"), 1, 10000)
	u.ResponseHeaderTimeout, _ = w.durationOrOff(f.get("response_header_timeout"), f.key("response_header_timeout"), time.Second, time.Hour)
	u.HTTP2ReadIdleTimeout, _ = w.duration(f.get("http2_read_idle_timeout"), f.key("http2_read_idle_timeout"), time.Second, time.Hour)
	u.CopyBufferSize, _ = w.size(f.get("copy_buffer_size"), f.key("copy_buffer_size"), 4*kib, mib, false)
	u.TLSCurves = w.curves(f.get("tls_curves"), f.key("tls_curves"))
	u.TLSRecordSizing, _ = w.oneOf(f.get("tls_record_sizing"), f.key("tls_record_sizing"), []string{"dynamic", "max"}, nil)
	u.RequestHeadersToRemove = w.requestHeadersToRemove(f.get("request_headers_to_remove"), f.key("request_headers_to_remove"))
	q, ok := w.mapping(f.get("quic"), "upstream.quic", keys("upstream.quic")...)
	if !ok {
		return
	}
	u.QUIC.Line = q.line
	streams, _ := w.integer(q.get("max_incoming_streams"), q.key("max_incoming_streams"), 1, 100_000)
	u.QUIC.MaxIncomingStreams = int64(streams)
	u.QUIC.IdleTimeout, _ = w.duration(q.get("idle_timeout"), q.key("idle_timeout"), time.Second, time.Hour)
	u.QUIC.KeepAlivePeriod, _ = w.duration(q.get("keep_alive_period"), q.key("keep_alive_period"), time.Second, time.Hour)
	u.QUIC.MaxStreamReceiveWindow, _ = w.size(q.get("max_stream_receive_window"), q.key("max_stream_receive_window"), 64*kib, gib, false)
	u.QUIC.MaxConnectionReceiveWindow, _ = w.size(q.get("max_connection_receive_window"), q.key("max_connection_receive_window"), 64*kib, gib, false)
}

// size parses a byte count: a decimal integer, or a string of one with a
// binary unit ("64KiB", "1MiB"). zeroOff accepts 0 as "off"; otherwise 0
// is out of bounds like any other value.
func (w *walker) size(n *yaml.Node, path string, lo, hi int64, zeroOff bool) (int64, bool) {
	if n == nil || isNull(n) {
		return 0, true
	}
	var v int64
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int":
		var err error
		if v, err = strconv.ParseInt(n.Value, 10, 64); err != nil || v < 0 {
			w.add(n.Line, path, "%s is not a size; write bytes in decimal, or with a unit like \"64KiB\"", n.Value)
			return 0, false
		}
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		var reason string
		if v, reason = parseSize(n.Value); reason != "" {
			w.add(n.Line, path, "%q is not a size: %s", n.Value, reason)
			return 0, false
		}
	default:
		w.wrongKind(n, path, `a size, like 65536 or "64KiB"`)
		return 0, false
	}
	switch {
	case v == 0 && zeroOff:
		return 0, true
	case v < lo || v > hi:
		off := ""
		if zeroOff {
			off = " (0 turns it off)"
		}
		w.add(n.Line, path, "%s is not between %s and %s%s", units.FormatSize(v), units.FormatSize(lo), units.FormatSize(hi), off)
		return 0, false
	}
	return v, true
}

var sizeUnits = []struct {
	name string
	mult int64
}{{"TiB", tib}, {"GiB", gib}, {"MiB", mib}, {"KiB", kib}, {"B", 1}}

// parseSize reads "<digits>[unit]"; the reason is "" when it is one.
func parseSize(s string) (int64, string) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	digits, unit := s[:i], strings.TrimSpace(s[i:])
	if digits == "" {
		return 0, "write a whole number of bytes, or one with a unit: B, KiB, MiB, GiB, TiB"
	}
	mult := int64(0)
	for _, u := range sizeUnits {
		if unit == u.name {
			mult = u.mult
		}
	}
	switch {
	case unit == "":
		mult = 1
	case mult == 0:
		switch strings.ToLower(unit) {
		case "k", "kb", "ki", "m", "mb", "mi", "g", "gb", "gi", "t", "tb", "ti", "kib", "mib", "gib", "tib":
			return 0, "use the binary units KiB, MiB, GiB or TiB, spelt so (1KiB = 1024 bytes)"
		}
		return 0, "unknown unit " + strconv.Quote(unit) + "; use B, KiB, MiB, GiB or TiB"
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v > (1<<62)/mult {
		return 0, "too large"
	}
	return v * mult, ""
}

// durationOrOff is duration, except that 0s turns the setting off.
func (w *walker) durationOrOff(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	if n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		if d, err := time.ParseDuration(n.Value); err == nil && d >= 0 && d < lo {
			if d == 0 {
				return 0, true
			}
			w.add(n.Line, path, "%s is below the minimum of %s (0s turns it off)", n.Value, units.FormatDuration(lo))
			return 0, false
		}
	}
	return w.duration(n, path, lo, hi)
}

// boolean reads true or false.
func (w *walker) boolean(n *yaml.Node, path string) (bool, bool) {
	var b bool
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" && n.Decode(&b) == nil {
		return b, true
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		switch strings.ToLower(n.Value) {
		case "true", "false", "yes", "no", "on", "off":
			w.add(n.Line, path, "expected true or false, got string %q; write true or false, unquoted", n.Value)
			return false, false
		}
	}
	w.wrongKind(n, path, "true or false")
	return false, false
}
