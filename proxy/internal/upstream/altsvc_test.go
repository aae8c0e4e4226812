package upstream

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestParseAltSvc(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in    []string
		want  []altSvc
		clear bool
		err   bool
	}{
		{in: []string{`h3=":443"`}, want: []altSvc{{"h3", "", 443, day}}},
		{in: []string{`h3=":8443"; ma=60, h2="alt.example:443"; persist=1`}, want: []altSvc{{"h3", "", 8443, time.Minute}, {"h2", "alt.example", 443, day}}},
		{in: []string{`h3-29=":443"`, ` h3=":443" ;ma="3600"`}, want: []altSvc{{"h3-29", "", 443, day}, {"h3", "", 443, time.Hour}}},
		{in: []string{`w%3Dx%3Ay="[::1]:443"`}, want: []altSvc{{"w=x:y", "::1", 443, day}}},
		{in: []string{`h3="h\"o:1"`}, want: nil},                                             // bad host: skipped, header kept
		{in: []string{`h3=":0", h3=":443"`}, want: []altSvc{{"h3", "", 443, day}}},           // bad port skipped
		{in: []string{`h3=":443"; ma=abc, h3=":444"`}, want: []altSvc{{"h3", "", 444, day}}}, // bad ma skipped
		{in: []string{`h3=":443"; ma=99999999999999999999`}, want: []altSvc{{"h3", "", 443, altSvcMaxMaxAge}}},
		{in: []string{`h3=":443"; ma=0`}, want: []altSvc{{"h3", "", 443, 0}}},
		{in: []string{`,, h3=":443" ,`}, want: []altSvc{{"h3", "", 443, day}}},
		{in: []string{`clear`}, clear: true},
		{in: []string{` Clear `}, clear: true},
		{in: []string{`clear, h3=":443"`}, err: true},
		{in: []string{`h3=:443`}, err: true},
		{in: []string{`h3=":443`}, err: true},
		{in: []string{`h3`}, err: true},
		{in: []string{`h3=":443"; ma`}, err: true},
		{in: []string{`h3=":443" junk`}, err: true},
		{in: []string{"h3=\":44\x003\""}, err: true},
	}
	for _, tt := range tests {
		got, clear, err := parseAltSvc(tt.in)
		if (err != nil) != tt.err || clear != tt.clear || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("parseAltSvc(%q) = %v, %v, %v; want %v, %v, error %v", tt.in, got, clear, err, tt.want, tt.clear, tt.err)
		}
		if err != nil && !errors.Is(err, errAltSvcSyntax) {
			t.Errorf("parseAltSvc(%q): error %v is not errAltSvcSyntax", tt.in, err)
		}
	}
	many := ""
	for i := 0; i <= altSvcMaxAlts; i++ {
		many += `h3=":443",`
	}
	if _, _, err := parseAltSvc([]string{many}); err == nil {
		t.Errorf("%d alternatives accepted", altSvcMaxAlts+1)
	}
}

// FuzzParseAltSvc: Alt-Svc comes from the upstream. Whatever it says, the
// parser returns in bounded time and only usable alternatives.
func FuzzParseAltSvc(f *testing.F) {
	for _, s := range []string{`h3=":443"; ma=86400`, `clear`, `h3="[::1]:1"; persist=1, h2="x:2"`, `a="b:c"`, `h3=":443";ma="1"`, `=`, `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		alts, clear, err := parseAltSvc([]string{s})
		if err != nil && (alts != nil || clear) {
			t.Fatalf("error %v with results %v %v", err, alts, clear)
		}
		if len(alts) > altSvcMaxAlts {
			t.Fatalf("%d alternatives", len(alts))
		}
		for _, a := range alts {
			if a.port < 1 || a.port > 65535 || a.maxAge < 0 || a.maxAge > altSvcMaxMaxAge || a.proto == "" {
				t.Fatalf("bad alternative %+v from %q", a, s)
			}
		}
	})
}
