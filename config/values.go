package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/procmesh/procmesh/internal/units"
)

// Parsers of plain values: durations, file modes, integers, paths and
// enumerations. Each returns the zero value and false after recording a
// problem; an absent, null or "" value is returned as zero and true.

// maxSocketPath is the longest path a Unix socket can have (sun_path is 108
// bytes including the terminating NUL).
const maxSocketPath = 107

func (w *walker) duration(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	if n != nil && n.Kind == yaml.ScalarNode && isPlainScalar(n) {
		w.add(n.Line, path, "expected a duration like %s, got %s; durations need a unit (s, m, h)", units.FormatDuration(lo), describe(n))
		return 0, false
	}
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return 0, ok
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		w.add(n.Line, path, "%q is not a duration; write it like 90s, 5m or 1h30m", s)
	case d < lo:
		w.add(n.Line, path, "%s is below the minimum of %s", s, units.FormatDuration(lo))
	case d > hi:
		w.add(n.Line, path, "%s is above the maximum of %s", s, units.FormatDuration(hi))
	default:
		return d, true
	}
	return 0, false
}

// mode parses a socket's file mode: a quoted string of four octal digits,
// writable by someone (connect(2) needs write permission). A world-writable
// mode ("0666") is accepted: attestation, not the file mode, decides what a
// caller gets, and connections without an identity are bounded per uid
// (limits.max_unattested_connections_per_uid, THREATS F11); procmesh logs a
// note at start.
func (w *walker) mode(n *yaml.Node, path string) (os.FileMode, bool) {
	if n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		w.add(n.Line, path, "write the mode quoted, like \"0660\"; unquoted, YAML reads %s as a number, not a mode", n.Value)
		return 0, false
	}
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return 0, ok
	}
	v, err := strconv.ParseUint(s, 8, 32)
	switch {
	case len(s) != 4 || s[0] != '0' || err != nil:
		w.add(n.Line, path, "%q is not an octal file mode; write four octal digits, like \"0660\"", s)
	case v&0o222 == 0:
		w.add(n.Line, path, "%q is writable by no one, so no process could connect; use \"0660\"", s)
	default:
		return os.FileMode(v), true
	}
	return 0, false
}

func (w *walker) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	if n == nil || isNull(n) {
		return 0, true
	}
	var v int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		w.wrongKind(n, path, "an integer")
		return 0, false
	}
	if v < lo || v > hi {
		w.add(n.Line, path, "%d is not between %d and %d", v, lo, hi)
		return 0, false
	}
	return v, true
}

// absPath accepts an absolute path and returns it cleaned.
func (w *walker) absPath(n *yaml.Node, path, example string) (string, bool) {
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return "", ok
	}
	switch {
	case strings.ContainsRune(s, 0):
		w.add(n.Line, path, "path contains a NUL byte")
	case !filepath.IsAbs(s):
		w.add(n.Line, path, "%q is not an absolute path; write it like %s", s, example)
	default:
		return filepath.Clean(s), true
	}
	return "", false
}

// socketPath is an absPath short enough for a Unix socket address.
func (w *walker) socketPath(n *yaml.Node, path string) (string, bool) {
	p, ok := w.absPath(n, path, DefaultSocket)
	if ok && len(p) > maxSocketPath {
		w.add(n.Line, path, "socket path is %d bytes; Unix socket paths are limited to %d", len(p), maxSocketPath)
		return "", false
	}
	return p, ok
}

// oneOf accepts one of choices; later lists values accepted by later
// versions, named in the message so that users know they are coming.
func (w *walker) oneOf(n *yaml.Node, path string, choices, later []string) (string, bool) {
	s, ok := w.str(n, path)
	if !ok || s == "" || contains(choices, s) {
		return s, ok
	}
	if contains(later, s) {
		verb := "comes"
		if len(later) > 1 {
			verb = "come"
		}
		w.add(n.Line, path, "%q is not supported yet (%s %s later); use %s", s, strings.Join(later, " and "), verb, strings.Join(choices, " or "))
	} else {
		w.add(n.Line, path, "%q is not one of %s", s, strings.Join(choices, ", "))
	}
	return "", false
}

func (w *walker) logLevel(n *yaml.Node, path string) (zerolog.Level, bool) {
	s, ok := w.oneOf(n, path, []string{"trace", "debug", "info", "warn", "error"}, nil)
	if !ok || s == "" {
		return DefaultLogLevel, ok
	}
	switch s {
	case "trace":
		return zerolog.TraceLevel, true
	case "debug":
		return zerolog.DebugLevel, true
	case "warn":
		return zerolog.WarnLevel, true
	case "error":
		return zerolog.ErrorLevel, true
	}
	return zerolog.InfoLevel, true
}
