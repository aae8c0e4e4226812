package policy

import (
	"fmt"
	"strings"
)

// PathError says why NormalizePath refused a path. The proxy answers it
// with 400: a path that cannot be normalised unambiguously is never
// decided on nor forwarded.
type PathError struct {
	Path   string
	Reason string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("policy: path %q: %s", e.Path, e.Reason)
}

// NormalizePath returns the one form of a request path that the policy
// matches and the proxy forwards upstream. raw is the path as sent (escaped,
// without query or fragment: r.URL.EscapedPath() or the raw request target
// up to '?'; never r.URL.Path, in which %2F is already a '/'). It:
//
//   - decodes percent-encoded unreserved characters (letters, digits,
//     "-", ".", "_", "~") and writes every other escape in upper case;
//   - percent-encodes bytes that may not appear raw in a path (space, '"',
//     '<', '>', '[', ']', '^', '`', '{', '|', '}', and bytes >= 0x80);
//   - merges runs of "/" ("//a" is "/a"), removes "." segments and
//     resolves ".." segments against the segment before, never above the
//     root, as path.Clean does ("/a//../b" is "/b"); a path ending in "/",
//     "/." or "/.." keeps a trailing "/" (RFC 3986 section 5.2.4);
//
// and refuses (*PathError) what upstreams disagree about: a path not
// starting with "/" (including "*" and ""), "%2F" and "%5C" (an encoded
// slash or backslash is a separator to some upstreams and not to others), a
// raw backslash, NUL and other control characters raw or encoded, malformed
// escapes, double encoding ("%25" followed by two hex digits, which an
// upstream decoding twice would read differently), a raw '?' or '#', and
// "." or ".." segments with parameters ("..;/", which Tomcat-style
// upstreams read as ".."). Case is kept: "/PUBLIC" is not "/public".
//
// A path already in normal form is returned as is, without allocating.
func NormalizePath(raw string) (string, error) {
	if isNormal(raw) {
		return raw, nil
	}
	return normalizeSlow(raw)
}

// byte classes
const (
	clsUnreserved = 1 << iota // ALPHA DIGIT - . _ ~
	clsRawOK                  // may appear raw in a normal path: unreserved, sub-delims, ':', '@'
)

var class [256]uint8

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-._~", b) >= 0 {
			class[c] |= clsUnreserved | clsRawOK
		}
		if strings.IndexByte("!$&'()*+,;=:@", b) >= 0 {
			class[c] |= clsRawOK
		}
	}
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const upperHex = "0123456789ABCDEF"

// isNormal reports whether raw is already what normalizeSlow returns.
func isNormal(raw string) bool {
	if len(raw) == 0 || raw[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(raw); i++ {
		if i == len(raw) || raw[i] == '/' {
			seg := raw[segStart:i]
			switch {
			case seg == "" && i < len(raw): // "//"
				return false
			case seg == "." || seg == "..":
				return false
			case strings.HasPrefix(seg, ".;") || strings.HasPrefix(seg, "..;"):
				return false
			}
			segStart = i + 1
			continue
		}
		c := raw[i]
		if c == '%' {
			if i+2 >= len(raw) {
				return false
			}
			h, ok1 := upperNibble(raw[i+1])
			l, ok2 := upperNibble(raw[i+2])
			if !ok1 || !ok2 {
				return false
			}
			if escapeProblem(h<<4|l) != "" || class[h<<4|l]&clsUnreserved != 0 || doubleEncoded(raw[i:]) {
				return false
			}
			i += 2
			continue
		}
		if class[c]&clsRawOK == 0 {
			return false
		}
	}
	return true
}

// upperNibble accepts only upper-case hex digits, the normal form.
func upperNibble(c byte) (byte, bool) {
	if 'a' <= c && c <= 'f' {
		return 0, false
	}
	return unhex(c)
}

// escapeProblem says why the escape of byte b is refused.
func escapeProblem(b byte) string {
	switch {
	case b == '/':
		return "encoded slash (%2F): upstreams disagree on whether it separates segments"
	case b == '\\':
		return "encoded backslash (%5C): some upstreams treat it as a slash"
	case b == 0:
		return "encoded NUL (%00)"
	case b < 0x20 || b == 0x7f:
		return fmt.Sprintf("encoded control character (%%%02X)", b)
	}
	return ""
}

// doubleEncoded reports whether s starts with "%25" and two hex digits, in
// normal form (after unreserved escapes are decoded).
func doubleEncoded(s string) bool {
	if len(s) < 5 || s[:3] != "%25" {
		return false
	}
	_, ok1 := unhex(s[3])
	_, ok2 := unhex(s[4])
	return ok1 && ok2
}

func normalizeSlow(raw string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", &PathError{Path: raw, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case raw == "":
		return fail("empty; a request path starts with /")
	case raw == "*":
		return fail("asterisk-form (OPTIONS *) is not proxied; a request path starts with /")
	case raw[0] != '/':
		return fail("does not start with /")
	}
	// Decode into buf, marking separators: a '/' in buf is always a raw
	// separator because %2F is refused.
	buf := make([]byte, 0, len(raw)+8)
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) {
				return fail("malformed percent-encoding at byte %d: %% needs two hex digits", i)
			}
			h, ok1 := unhex(raw[i+1])
			l, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return fail("malformed percent-encoding %q at byte %d", raw[i:i+3], i)
			}
			b := h<<4 | l
			if reason := escapeProblem(b); reason != "" {
				return fail("%s", reason)
			}
			if class[b]&clsUnreserved != 0 {
				buf = append(buf, b)
			} else {
				buf = append(buf, '%', upperHex[b>>4], upperHex[b&15])
			}
			i += 2
		case c == '\\':
			return fail("backslash: some upstreams treat it as a slash; send %s", "/")
		case c == 0:
			return fail("NUL byte")
		case c < 0x20 || c == 0x7f:
			return fail("control character %q", c)
		case c == '?' || c == '#':
			return fail("contains %q: pass the path without query or fragment", c)
		case c == '/' || class[c]&clsRawOK != 0:
			buf = append(buf, c)
		default:
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	for i := 0; i < len(buf); i++ {
		if buf[i] == '%' && doubleEncoded(string(buf[i:min(i+5, len(buf))])) {
			return fail("double percent-encoding (%%25 followed by hex digits): an upstream that decodes twice would see another path")
		}
	}
	// Resolve segments.
	var out []string
	trailing := false
	segs := strings.Split(string(buf[1:]), "/")
	for k, seg := range segs {
		last := k == len(segs)-1
		switch {
		case seg == "" || seg == ".":
			trailing = last
		case seg == "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		case strings.HasPrefix(seg, ".;") || strings.HasPrefix(seg, "..;"):
			return fail("dot segment with parameters (%q): Tomcat-style upstreams read it as %q", seg, strings.SplitN(seg, ";", 2)[0])
		default:
			out = append(out, seg)
			trailing = false
		}
	}
	if len(out) == 0 {
		return "/", nil
	}
	s := "/" + strings.Join(out, "/")
	if trailing {
		s += "/"
	}
	return s, nil
}
