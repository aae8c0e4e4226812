package registry

import "testing"

// TestNeedsNames: names matter when an entry or a selector matched
// elsewhere is unix:user or unix:group, and only then.
func TestNeedsNames(t *testing.T) {
	for _, tt := range []struct {
		name    string
		entries []Entry
		opts    []Option
		want    bool
	}{
		{"ids only", entries(sel("unix:uid:1000"), sel("unix:uid:1001", "unix:gid:10")), nil, false},
		{"an entry with a user", entries(sel("unix:uid:1000"), sel("unix:uid:1001", "unix:user:billing")), nil, true},
		{"an entry with a group", entries(sel("unix:group:billing", "unix:path:/usr/bin/billing")), nil, true},
		{"a look-alike value is not a name selector", entries(sel("unix:path:/unix:user:x")), nil, false},
		{"policy selector with a group", entries(sel("unix:uid:1000")), []Option{AlsoMatched("unix:path:/bin/sh", "unix:group:ops")}, true},
		{"policy selectors without names", entries(sel("unix:uid:1000")), []Option{AlsoMatched("unix:gid:10")}, false},
		{"no entries, policy user", nil, []Option{AlsoMatched("unix:user:root")}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.entries, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.NeedsNames(); got != tt.want {
				t.Errorf("NeedsNames() = %v, want %v", got, tt.want)
			}
		})
	}
	var nilReg *Registry
	if nilReg.NeedsNames() {
		t.Error("a nil Registry needs names")
	}
}
