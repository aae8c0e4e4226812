package inbound_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/inbound"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/internal/spiretest"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// TestInboundSPIRE: with SPIRE as the identity source, SPIRE attests the
// serving process by PID and issues the certificate presented; a service
// served by a program SPIRE has no entry for gets none. The caller is of a
// federated trust domain (a static bundle).
func TestInboundSPIRE(t *testing.T) {
	sp := spiretest.Start(t, spiretest.Options{})
	spireApp := spiffeid.RequireFromString("spiffe://example.org/inbound/app")
	sp.CreateEntry(spireApp.String(), "unix:path:"+bins.app)
	sp.WaitEntry(spireApp.String(), "unix:path:"+bins.app)

	partnerTD := spiffeid.RequireTrustDomainFromString("partner.test")
	partnerCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: partnerTD, StateDir: t.TempDir() + "/partner"})
	if err != nil {
		t.Fatal(err)
	}
	web := spiffeid.RequireFromPath(partnerTD, "/web")
	callerSVID, err := partnerCA.Mint(web)
	if err != nil {
		t.Fatal(err)
	}

	audit := &logtest.Buffer{}
	att := attest.New(attest.Options{})
	src, err := spire.New(spire.Options{AdminSocket: sp.AdminSocket, Alive: att.Alive,
		Static: x509bundle.NewSet(partnerCA.Bundle()), Logger: zerolog.New(audit)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	reg, _ := registry.New(nil)
	res, err := workload.New(att, reg, src, workload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	srv, err := inbound.New(inbound.Options{Source: src, Resolver: res, Audit: zerolog.New(audit)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	good := startApp(t, bins.app, "http")
	bad := startApp(t, bins.wrong, "http")
	pol, err := policy.New(false, []policy.Rule{{From: []spiffeid.ID{web}, To: []string{"good", "bad"}}})
	if err != nil {
		t.Fatal(err)
	}
	goodAddr, badAddr := freeAddr(t), freeAddr(t)
	if err := srv.Apply([]inbound.Listener{
		{Name: "good", Listen: goodAddr, Service: good.sock, Protocol: "http1", Identity: spireApp, Policy: pol, PassIdentity: "xfcc"},
		{Name: "bad", Listen: badAddr, Service: bad.sock, Protocol: "http1", Identity: spireApp, Policy: pol, PassIdentity: "xfcc"},
	}, time.Second); err != nil {
		t.Fatal(err)
	}
	spireBundle, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString(spiretest.TrustDomain), sp.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(callerSVID, spireBundle, tlsconfig.AuthorizeID(spireApp))}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	s, resp := getSeen(t, c, "https://"+goodAddr+"/", nil)
	if resp.StatusCode != 200 || len(s.XFCC) != 1 || !strings.HasPrefix(s.XFCC[0], "By="+spireApp.String()+";") || !strings.HasSuffix(s.XFCC[0], ";URI="+web.String()) {
		t.Fatalf("through SPIRE's certificate: %s, app saw %q\n%s", resp.Status, s.XFCC, audit.String())
	}
	if resp, err := c.Get("https://" + badAddr + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a program SPIRE has no entry for was given the app's certificate: %s", resp.Status)
	}
	for i := 0; i < 300 && len(audit.Lines(`"inbound":"bad"`, `"event":"inbound_handshake"`)) == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if len(audit.Lines(`"inbound":"bad"`, `"event":"inbound_handshake"`, "spire")) == 0 {
		t.Fatalf("no audit line for the refused service:\n%s", audit.String())
	}
	if len(bad.out.Lines("request")) != 0 {
		t.Fatal("the unregistered program got requests")
	}
}
