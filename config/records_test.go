package config

import "testing"

// TestRecordSizing: upstream.tls_record_sizing is dynamic unless set to
// max; anything else is refused with the choices.
func TestRecordSizing(t *testing.T) {
	const head = "trust_domain: example.org\n"
	for _, tt := range []struct{ name, src, want string }{
		{"absent", head, "dynamic"},
		{"dynamic", head + "upstream: {tls_record_sizing: dynamic}\n", "dynamic"},
		{"max", head + "upstream: {tls_record_sizing: max}\n", "max"},
	} {
		c, err := Parse("test.yaml", []byte(tt.src))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if c.Upstream.TLSRecordSizing != tt.want {
			t.Errorf("%s: TLSRecordSizing = %q, want %q", tt.name, c.Upstream.TLSRecordSizing, tt.want)
		}
	}
	want := `test.yaml:3: upstream.tls_record_sizing: "16KiB" is not one of dynamic, max`
	if got := parseErr(t, head+"upstream:\n  tls_record_sizing: 16KiB\n"); got != want {
		t.Errorf("error\n got %s\nwant %s", got, want)
	}
}
