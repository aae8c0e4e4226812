package policy

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestMayAllow(t *testing.T) {
	a := spiffeid.RequireFromString("spiffe://example.org/team-a/web")
	b := spiffeid.RequireFromString("spiffe://example.org/b")
	p, err := New(false, []Rule{
		{Name: "a-read", FromPrefix: []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/team-a")}, To: []string{"echo"}, Methods: []string{"GET"}},
		{Name: "b-db", From: []spiffeid.ID{b}, To: []string{"db"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src   spiffeid.ID
		route string
		want  bool
	}{
		{a, "echo", true}, // a request-level rule still may allow
		{a, "db", false},
		{b, "db", true},
		{b, "echo", false},
		{spiffeid.ID{}, "db", false},
	} {
		if got := p.MayAllow(c.src, c.route); got != c.want {
			t.Errorf("MayAllow(%s, %s) = %v, want %v", c.src, c.route, got, c.want)
		}
	}
	open, _ := New(true, nil)
	if !open.MayAllow(b, "anything") {
		t.Error("default allow: MayAllow false")
	}
}
