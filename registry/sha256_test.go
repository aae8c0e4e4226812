package registry

import "testing"

// TestNeedsSHA256: the hash matters when an entry or rule pinned with
// unix:sha256 has all its other selectors among the process's, and only
// then (THREATS F12).
func TestNeedsSHA256(t *testing.T) {
	const sha = "unix:sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	billing := sel("unix:uid:1000", "unix:path:/usr/local/bin/billing", sha)
	reports := sel("unix:uid:1000", "unix:path:/usr/local/bin/reports")
	for _, tt := range []struct {
		name    string
		entries []Entry
		opts    []Option
		procSel []string
		want    bool
	}{
		{"no pinned entry", entries(reports), nil, []string{"unix:path:/usr/local/bin/reports", "unix:uid:1000"}, false},
		{"pinned entry, other path", entries(billing, reports), nil, []string{"unix:path:/home/u/big", "unix:uid:1000"}, false},
		{"pinned entry, other uid", entries(billing, reports), nil, []string{"unix:path:/usr/local/bin/billing", "unix:uid:1001"}, false},
		{"pinned entry could match", entries(billing, reports), nil, []string{"unix:gid:1000", "unix:path:/usr/local/bin/billing", "unix:uid:1000"}, true},
		{"unsorted input", entries(billing), nil, []string{"unix:uid:1000", "unix:path:/usr/local/bin/billing"}, true},
		{"sha256 alone matches anything", entries(sel(sha)), nil, []string{"unix:uid:0"}, true},
		{"rule with sha256 could match", entries(reports), []Option{AlsoMatched("unix:uid:1000", sha)}, []string{"unix:uid:1000"}, true},
		{"rule with sha256 cannot match", entries(reports), []Option{AlsoMatched("unix:uid:0", sha)}, []string{"unix:uid:1000"}, false},
		{"rules are separate sets", entries(reports), []Option{AlsoMatched("unix:uid:0"), AlsoMatched("unix:gid:5", sha)}, []string{"unix:gid:5", "unix:uid:1000"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.entries, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.NeedsSHA256(tt.procSel); got != tt.want {
				t.Errorf("NeedsSHA256(%q) = %v, want %v", tt.procSel, got, tt.want)
			}
		})
	}
	var nilReg *Registry
	if nilReg.NeedsSHA256([]string{"unix:uid:0"}) {
		t.Error("a nil Registry needs a hash")
	}
}
