package config

import (
	"strings"
	"testing"
)

// TestAdminListen: the admin listener takes loopback host:port or a Unix
// socket path; any other address is refused, naming FILE:LINE and the key
// that allows it, unless admin.allow_non_loopback is set.
func TestAdminListen(t *testing.T) {
	for _, tc := range []struct {
		name, admin, want, err string
	}{
		{"off", `{}`, "", ""},
		{"loopback v4", `{listen: "127.0.0.1:9902"}`, "127.0.0.1:9902", ""},
		{"loopback v6", `{listen: "[::1]:9902"}`, "[::1]:9902", ""},
		{"localhost", `{listen: "localhost:9902"}`, "localhost:9902", ""},
		{"unix", `{listen: /run/procmesh/admin.sock}`, "/run/procmesh/admin.sock", ""},
		{"any address refused", `{listen: "0.0.0.0:9902"}`, "",
			`test.yaml:2: admin.listen: "0.0.0.0:9902" is not a loopback address: the status page and metrics show every process's identity to whoever reaches it; use 127.0.0.1:9902 or a Unix socket path, or set admin.allow_non_loopback: true`},
		{"pod IP refused", `{listen: "10.1.2.3:9902"}`, "", "is not a loopback address"},
		{"any address allowed", `{listen: "0.0.0.0:9902", allow_non_loopback: true}`, "0.0.0.0:9902", ""},
		{"host name", `{listen: "example.org:9902"}`, "", `test.yaml:2: admin.listen: "example.org:9902": write an IP address`},
		{"no port", `{listen: "127.0.0.1"}`, "", "is neither host:port"},
		{"bad port", `{listen: "127.0.0.1:http"}`, "", "the port must be a number"},
		{"relative path", `{listen: "admin.sock"}`, "", "is neither host:port"},
		{"label cap", `{max_identity_labels: 0}`, "", "admin.max_identity_labels: 0 is not between 1 and 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("test.yaml", []byte("trust_domain: example.org\nadmin: "+tc.admin+"\n"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin.Listen != tc.want {
				t.Fatalf("admin.listen = %q; want %q", c.Admin.Listen, tc.want)
			}
		})
	}
}

// TestThreat_F11_WorldConnectableModeAccepted: once connections without an
// identity are bounded per uid (F11), a world-connectable socket is a
// deployment choice (pods run as arbitrary uids), not a config error.
func TestThreat_F11_WorldConnectableModeAccepted(t *testing.T) {
	c, err := Parse("test.yaml", []byte("trust_domain: example.org\nlisten: {mode: \"0666\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.Mode != 0o666 {
		t.Fatalf("listen.mode = %o; want 0666", c.Listen.Mode)
	}
}
