package inbound_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// TestThreat_N1_PolicyHeadersAndAuditMode: an inbound listener's policy
// decides on headers as egress policy does (every field line must be the
// exact value), and an audit-mode rule allows what no enforce rule does,
// with an audit line that says "audit" and names the caller. Refused
// requests never reach the service.
func TestThreat_N1_PolicyHeadersAndAuditMode(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http2",
		policy.Rule{Name: "blue-tenant", From: []spiffeid.ID{frontID}, Headers: map[string]string{"X-Tenant": "blue"}},
		policy.Rule{Name: "legacy-admin", From: []spiffeid.ID{adminID}, Paths: []string{"/legacy/*"}, Mode: policy.Audit}))
	url := "https://" + e.addr("orders")
	front := e.svid(frontID)
	for _, h2 := range []bool{false, true} {
		c := e.httpClient(front, h2)
		for _, tc := range []struct {
			path string
			hdr  http.Header
			want int
		}{
			{"/h/blue", http.Header{"X-Tenant": {"blue"}}, 200},
			{"/h/none", nil, 403},
			{"/h/red", http.Header{"X-Tenant": {"red"}}, 403},
			{"/h/case", http.Header{"X-Tenant": {"Blue"}}, 403},
			{"/h/second", http.Header{"X-Tenant": {"blue", "red"}}, 403}, // the service might read the second
			{"/legacy/x", nil, 403},                                      // the audit rule is admin's, not frontend's
		} {
			if _, resp := getSeen(t, c, url+tc.path, tc.hdr); resp.StatusCode != tc.want {
				t.Fatalf("h2=%v: GET %s with %v: status %d, want %d", h2, tc.path, tc.hdr, resp.StatusCode, tc.want)
			}
		}
	}
	e.auditLines(`"event":"inbound_request"`, `"peer_id":"spiffe://example.org/frontend"`, `"target":"/h/second"`, `"decision":"deny"`, `"peer_addr":"127.0.0.1:`)
	e.auditLines(`"event":"inbound_request"`, `"target":"/h/blue"`, `"decision":"allow"`, `"rule":"blue-tenant"`)
	for _, l := range a.out.Lines("request") {
		if !strings.Contains(l, "/h/blue") {
			t.Fatalf("a refused request reached the service: %q", l)
		}
	}

	// Audit mode: admin is allowed by the audit-mode rule alone, and the
	// line says so; outside the rule's paths it is denied.
	admin := e.httpClient(e.svid(adminID), false)
	if _, resp := getSeen(t, admin, url+"/legacy/report", nil); resp.StatusCode != 200 {
		t.Fatalf("admin under the audit-mode rule: status %d, want 200", resp.StatusCode)
	}
	e.auditLines(`"event":"inbound_request"`, `"peer_id":"spiffe://example.org/admin"`, `"target":"/legacy/report"`, `"decision":"audit"`,
		`"rule":"legacy-admin"`, `"peer_addr":"127.0.0.1:`)
	if _, resp := getSeen(t, admin, url+"/other", nil); resp.StatusCode != 403 {
		t.Fatalf("admin outside the audit-mode rule: status %d, want 403", resp.StatusCode)
	}
	e.auditLines(`"peer_id":"spiffe://example.org/admin"`, `"target":"/other"`, `"decision":"deny"`)
	if got := a.out.Lines("request GET /legacy/report"); len(got) != 1 {
		t.Fatalf("the service saw %q, want the audited request once", got)
	}
}
