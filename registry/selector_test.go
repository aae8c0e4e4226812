package registry

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	hex64 := strings.Repeat("0123456789abcdef", 4)
	valid := []struct{ in, typ, value string }{
		{"unix:uid:0", TypeUID, "0"},
		{"unix:uid:4294967295", TypeUID, "4294967295"},
		{"unix:user:billing", TypeUser, "billing"},
		{"unix:gid:1000", TypeGID, "1000"},
		{"unix:group:staff", TypeGroup, "staff"},
		{"unix:supplementary_gid:27", TypeSupplementaryGID, "27"},
		{"unix:path:/usr/bin/billing", TypePath, "/usr/bin/billing"},
		{"unix:path:/opt/a b/c:d", TypePath, "/opt/a b/c:d"},
		{"unix:sha256:" + hex64, TypeSHA256, hex64},
		{"container:id:" + hex64, TypeContainerID, hex64},
		{"k8s:pod-uid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", TypePodUID, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"},
		{"systemd:id:billing.service", TypeSystemdID, "billing.service"},
		{"systemd:id:getty@tty1.service", TypeSystemdID, "getty@tty1.service"},
		{"systemd:id:session-2.scope", TypeSystemdID, "session-2.scope"},
	}
	for _, tc := range valid {
		typ, value, err := ParseSelector(tc.in)
		if err != nil || typ != tc.typ || value != tc.value {
			t.Errorf("ParseSelector(%q) = %q, %q, %v; want %q, %q, nil", tc.in, typ, value, err, tc.typ, tc.value)
		}
	}

	invalid := []struct{ in, reason string }{
		{"", "not <type>:<value>; write it like unix:uid:1000"},
		{"uid", "not <type>:<value>; write it like unix:uid:1000"},
		{"unix:uid", "not <type>:<value>; write it like unix:uid:1000"},
		{"unix:pid:1", `unknown selector type "unix:pid" (known: unix:uid, unix:user, unix:gid, unix:group, unix:supplementary_gid, unix:path, unix:sha256, container:id, k8s:pod-uid, systemd:id)`},
		{"UNIX:uid:1", `unknown selector type "UNIX:uid" (known: unix:uid, unix:user, unix:gid, unix:group, unix:supplementary_gid, unix:path, unix:sha256, container:id, k8s:pod-uid, systemd:id)`},
		{"unix:uid:", "empty value; write it like unix:uid:1000"},
		{"unix:uid:bob", "uid must be a decimal number without leading zeros, like unix:uid:1000; use unix:user:bob for a user name"},
		{"unix:uid:01000", "uid must be a decimal number without leading zeros, like unix:uid:1000; use unix:user:01000 for a user name"},
		{"unix:uid:+1", "uid must be a decimal number without leading zeros, like unix:uid:1000; use unix:user:+1 for a user name"},
		{"unix:uid:4294967296", "uid must be a decimal number without leading zeros, like unix:uid:1000; use unix:user:4294967296 for a user name"},
		{"unix:gid:-1", "gid must be a decimal number without leading zeros, like unix:gid:1000; use unix:group:-1 for a group name"},
		{"unix:supplementary_gid:x", "supplementary_gid must be a decimal number without leading zeros, like unix:supplementary_gid:27"},
		{"unix:user:bob smith", "names cannot contain ':', '/' or spaces"},
		{"unix:path:usr/bin/x", "path must be absolute, like /usr/bin/billing"},
		{"unix:path:/usr/bin/../bin/x", "path is not clean; write it as /usr/bin/x"},
		{"unix:path:/usr//bin/x", "path is not clean; write it as /usr/bin/x"},
		{"unix:path:/usr/bin/x\n", `value contains control character '\n'`},
		{"unix:sha256:" + strings.ToUpper(hex64), "sha256 must be 64 lowercase hex digits (sha256sum output)"},
		{"unix:sha256:abc", "sha256 must be 64 lowercase hex digits (sha256sum output)"},
		{"container:id:a/b", "container id must be at most 128 letters, digits, '.', '_' or '-'"},
		{"k8s:pod-uid:0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0", "pod uid must be a lowercase UUID like 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"},
		{"systemd:id:billing", "systemd:id must be a unit name with its suffix, like billing.service or session-2.scope"},
		{"systemd:id:.service", "systemd:id must be a unit name with its suffix, like billing.service or session-2.scope"},
		{"unix:path:/" + strings.Repeat("a", 4096), "value is 4097 bytes; at most 4096 are allowed"},
	}
	for _, tc := range invalid {
		_, _, err := ParseSelector(tc.in)
		var se *SelectorError
		if !errors.As(err, &se) {
			t.Errorf("ParseSelector(%q) error = %v; want *SelectorError", tc.in, err)
			continue
		}
		if se.Reason != tc.reason || se.Selector != tc.in {
			t.Errorf("ParseSelector(%q) reason\n got %s\nwant %s", tc.in, se.Reason, tc.reason)
		}
	}
}

// FuzzParseSelector checks the selector parser never panics and that an
// accepted selector is exactly its type and value joined.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"unix:uid:1000", "unix:path:/usr/bin/x", "systemd:id:a.service",
		"k8s:pod-uid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "unix:path:/a/../b", ":", "::", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		typ, value, err := ParseSelector(s)
		if err != nil {
			if typ != "" || value != "" {
				t.Fatalf("ParseSelector(%q) returned %q, %q with error %v", s, typ, value, err)
			}
			return
		}
		if typ+":"+value != s || value == "" || !knownType(typ) {
			t.Fatalf("ParseSelector(%q) = %q, %q", s, typ, value)
		}
	})
}
