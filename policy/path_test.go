package policy

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/a/b/", "/a/b/"},
		// Dot segments, never above the root.
		{"/a/./b", "/a/b"},
		{"/a/../b", "/b"},
		{"/a/b/..", "/a/"},
		{"/a/b/.", "/a/b/"},
		{"/a/b/../", "/a/"},
		{"/..", "/"},
		{"/../..", "/"},
		{"/../a", "/a"},
		{"/a/../../b", "/b"},
		{"/.", "/"},
		{"/...", "/..."},
		{"/a/.../b", "/a/.../b"},
		{"/.hidden/..x", "/.hidden/..x"},
		// Empty segments.
		{"//", "/"},
		{"//a", "/a"},
		{"/a//b", "/a/b"},
		{"/a///", "/a/"},
		// Percent-encoding: unreserved decoded, the rest upper-cased.
		{"/%61%62%63", "/abc"},
		{"/%7e%2D%5F%2e", "/~-_."},
		{"/a%2eb", "/a.b"},
		{"/%2e%2e/a", "/a"},
		{"/a/%2e%2E/b", "/b"},
		{"/a/%2e/b", "/a/b"},
		{"/a%20b", "/a%20b"},
		{"/a%7cb", "/a%7Cb"},
		{"/%3f%23", "/%3F%23"},
		{"/%25", "/%25"},
		{"/%25z1", "/%25z1"},
		{"/a%3Bb", "/a%3Bb"},
		{"/%e2%82%ac", "/%E2%82%AC"},
		// Raw bytes outside pchar are encoded.
		{"/a b", "/a%20b"},
		{"/a|b{c}", "/a%7Cb%7Bc%7D"},
		{"/€", "/%E2%82%AC"},
		{"/a\"<>^`[]", "/a%22%3C%3E%5E%60%5B%5D"},
		// Sub-delims, ':' and '@' stay raw; case is kept.
		{"/a;b=c,d:e@f!$&'()*+", "/a;b=c,d:e@f!$&'()*+"},
		{"/PUBLIC/X", "/PUBLIC/X"},
		{"/..a/b..;", "/..a/b..;"},
	}
	for _, tc := range tests {
		got, err := NormalizePath(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizePathRejects(t *testing.T) {
	tests := []struct{ in, reason string }{
		{"", "empty; a request path starts with /"},
		{"*", "asterisk-form (OPTIONS *) is not proxied; a request path starts with /"},
		{"a/b", "does not start with /"},
		{"http://x/a", "does not start with /"},
		{"/public%2Fadmin", "encoded slash (%2F): upstreams disagree on whether it separates segments"},
		{"/public%2fadmin", "encoded slash (%2F): upstreams disagree on whether it separates segments"},
		{"/public/..%2fadmin", "encoded slash (%2F): upstreams disagree on whether it separates segments"},
		{"/a%5Cb", "encoded backslash (%5C): some upstreams treat it as a slash"},
		{"/a%5cb", "encoded backslash (%5C): some upstreams treat it as a slash"},
		{"/a\\b", "backslash: some upstreams treat it as a slash; send /"},
		{"/a%00", "encoded NUL (%00)"},
		{"/a\x00", "NUL byte"},
		{"/a%0A", "encoded control character (%0A)"},
		{"/a%7f", "encoded control character (%7F)"},
		{"/a\tb", `control character '\t'`},
		{"/a\x7f", `control character '\x7f'`},
		{"/a%", "malformed percent-encoding at byte 2: % needs two hex digits"},
		{"/a%4", "malformed percent-encoding at byte 2: % needs two hex digits"},
		{"/a%zz", `malformed percent-encoding "%zz" at byte 2`},
		{"/a%252F", "double percent-encoding (%25 followed by hex digits): an upstream that decodes twice would see another path"},
		{"/a%252e%252e/b", "double percent-encoding (%25 followed by hex digits): an upstream that decodes twice would see another path"},
		{"/a%25%41%42", "double percent-encoding (%25 followed by hex digits): an upstream that decodes twice would see another path"},
		{"/a?b", `contains '?': pass the path without query or fragment`},
		{"/a#b", `contains '#': pass the path without query or fragment`},
		{"/public/..;/admin", `dot segment with parameters ("..;"): Tomcat-style upstreams read it as ".."`},
		{"/public/%2e%2e;x/admin", `dot segment with parameters ("..;x"): Tomcat-style upstreams read it as ".."`},
		{"/.;/a", `dot segment with parameters (".;"): Tomcat-style upstreams read it as "."`},
	}
	for _, tc := range tests {
		got, err := NormalizePath(tc.in)
		var pe *PathError
		if !errors.As(err, &pe) || pe.Reason != tc.reason || pe.Path != tc.in || got != "" {
			t.Errorf("NormalizePath(%q) = %q, %v; want reason %q", tc.in, got, err, tc.reason)
		}
	}
	if _, err := NormalizePath("/a%2F"); err.Error() != `policy: path "/a%2F": encoded slash (%2F): upstreams disagree on whether it separates segments` {
		t.Errorf("Error() = %q", err)
	}
}

// TestThreat_PathBypass: the bypass attempts of a caller allowed only under
// /public/ (GET) either normalise to a path the policy judges as the
// upstream will see it, or are refused before any decision.
func TestThreat_PathBypass(t *testing.T) {
	p := mustNew(t, false, []Rule{{Name: "public", FromPrefix: ids("team-a"), To: strs("echo"),
		Methods: strs("GET"), Paths: strs("/public/*")}})
	tests := []struct {
		raw     string
		forward string // "" = refused by NormalizePath
		allow   bool
	}{
		{"/public/x", "/public/x", true},
		{"/public/../admin", "/admin", false},
		{"/public/%2e%2e/admin", "/admin", false},
		{"/public/%2E%2E/admin", "/admin", false},
		{"/public/.%2e/admin", "/admin", false},
		{"/public/./../admin", "/admin", false},
		{"/public/a/../../admin", "/admin", false},
		{"/public/a/../b", "/public/b", true},
		{"//admin", "/admin", false},
		{"//public/x", "/public/x", true},
		{"/public//../admin", "/admin", false}, // empty segments merge first, as path.Clean and nginx do
		{"/public/..%2fadmin", "", false},
		{"/public%2Fadmin", "", false},
		{"/public%2fadmin", "", false},
		{"/public/..%5cadmin", "", false},
		{"/public/..\\admin", "", false},
		{"/public/..;/admin", "", false},
		{"/public/%252e%252e/admin", "", false},
		{"/public/%00/../admin", "", false},
		{"/PUBLIC/x", "/PUBLIC/x", false},
		{"/%70ublic/x", "/public/x", true},
		{"/public", "/public", false},
		{"/public/", "/public/", true},
		{"/publicity", "/publicity", false},
		{"/public/.", "/public/", true},
		{"/public/..", "/", false},
		{"/public/x/..", "/public/", true},
		{"/public/%2e", "/public/", true},
		{"/public/%2e%2e", "/", false},
	}
	for _, tc := range tests {
		norm, err := NormalizePath(tc.raw)
		if tc.forward == "" {
			if err == nil {
				t.Errorf("%q: normalised to %q; want it refused", tc.raw, norm)
			}
			continue
		}
		if err != nil || norm != tc.forward {
			t.Errorf("%q: NormalizePath = %q, %v; want %q", tc.raw, norm, err, tc.forward)
			continue
		}
		if d := p.Decide(get("team-a/web", "echo", "GET", norm)); d.Allow != tc.allow {
			t.Errorf("%q (as %q): allow = %v; want %v (%s)", tc.raw, norm, d.Allow, tc.allow, d.Reason)
		}
	}
}

// TestNormalizePathNormalNoAlloc: the common case, a path already normal,
// costs no allocation.
func TestNormalizePathNormalNoAlloc(t *testing.T) {
	for _, s := range []string{"/", "/api/v1/orders/42", "/a%20b/%E2%82%AC", "/x;y=1"} {
		if n := testing.AllocsPerRun(100, func() { NormalizePath(s) }); n != 0 {
			t.Errorf("NormalizePath(%q): %v allocs", s, n)
		}
	}
}

// FuzzNormalizePath: never panics; a result starts with "/", is stable
// (normalising it again returns it, by the fast path), has no empty, "." or
// ".." segment, no refused escape and no byte that needs encoding; for
// inputs of letters, dots and slashes it agrees with path.Clean up to the
// trailing slash.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x//y/", "/%2e%2E/%2f", "/a%25%41%42", "/..;/x", "/€%e2%82%AC",
		"/public/..%2fadmin", "/a/./b/../../c/.", "*", "", "/%", "/%zz", "/a b?c#d", "/..a/.b/..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizePath(in)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) || out != "" {
				t.Fatalf("NormalizePath(%q) = %q, %v", in, out, err)
			}
			return
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("NormalizePath(%q) = %q: no leading /", in, out)
		}
		if !isNormal(out) {
			t.Fatalf("NormalizePath(%q) = %q is not normal", in, out)
		}
		again, err := normalizeSlow(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		if isNormal(in) && out != in {
			t.Fatalf("fast path disagrees with slow path: %q -> %q", in, out)
		}
		for _, bad := range []string{"//", "/./", "/../"} {
			if strings.Contains(out, bad) {
				t.Fatalf("NormalizePath(%q) = %q contains %q", in, out, bad)
			}
		}
		if strings.HasSuffix(out, "/.") || strings.HasSuffix(out, "/..") {
			t.Fatalf("NormalizePath(%q) = %q ends in a dot segment", in, out)
		}
		up := strings.ToUpper(out)
		for _, bad := range []string{"%2F", "%5C", "%00", "%2E", "\\"} {
			if strings.Contains(up, bad) {
				t.Fatalf("NormalizePath(%q) = %q contains %q", in, out, bad)
			}
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("NormalizePath(%q) = %q has byte %#x", in, out, c)
			}
		}
		if strings.Trim(in, "/.abc") == "" && strings.HasPrefix(in, "/") {
			clean := path.Clean(in)
			if got := strings.TrimSuffix(out, "/"); got != strings.TrimSuffix(clean, "/") {
				t.Fatalf("NormalizePath(%q) = %q; path.Clean = %q", in, out, clean)
			}
		}
	})
}
