package tlsconf

import (
	"context"
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

func TestClientConfig_Settings(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	svid := mustMint(t, ca, idBilling)
	a := ClientConfig(svid, x509bundle.NewSet(ca.Bundle()), tlsconfig.AuthorizeAny())
	b := ClientConfig(svid, x509bundle.NewSet(ca.Bundle()), tlsconfig.AuthorizeAny(), "h2", "http/1.1")
	if a.MinVersion != tls.VersionTLS13 || a.MaxVersion != tls.VersionTLS13 {
		t.Errorf("versions %x-%x, want TLS 1.3 only", a.MinVersion, a.MaxVersion)
	}
	if a.NextProtos != nil || len(b.NextProtos) != 2 || b.NextProtos[0] != "h2" {
		t.Errorf("NextProtos %v / %v", a.NextProtos, b.NextProtos)
	}
	if a.ClientSessionCache == nil || a.ClientSessionCache == b.ClientSessionCache {
		t.Error("two ClientConfigs share a session cache (or have none)")
	}
}

// TestThreat_I6_SessionCachePerIdentity: a resumed TLS 1.3 handshake sends
// no certificate and the upstream attributes it to the original one, so
// sessions must never cross identities. Each ClientConfig owns its cache:
// billing resumes only billing's sessions and analytics gets a full
// handshake under its own name. The control shows that a shared cache
// would make analytics arrive as billing, so the test can fail.
func TestThreat_I6_SessionCachePerIdentity(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	up := newUpstream(t)
	store := NewStore(ca, x509bundle.NewSet(up.bundles.Bundles()[0]), StoreOptions{})
	defer func() { _ = store.Close() }()
	srv := startRecServer(t, tlsconfig.MTLSServerConfig(up.svid, x509bundle.NewSet(ca.Bundle()), tlsconfig.AuthorizeMemberOf(tdExample)))

	auth := AuthorizerFor(idEcho, tdUpstream)
	billing := ClientConfig(store.SVIDSource(idBilling), store.Bundles(), auth)
	analytics := ClientConfig(store.SVIDSource(idAnalyst), store.Bundles(), auth)
	if billing.ClientSessionCache == analytics.ClientSessionCache {
		t.Fatal("two identities share a ClientSessionCache")
	}

	steps := []struct {
		name        string
		cfg         *tls.Config
		want        spiffeid.ID
		wantResumed bool
	}{
		{"billing, first", billing, idBilling, false},
		{"billing, again", billing, idBilling, true},
		{"analytics, first", analytics, idAnalyst, false},
		{"billing, third", billing, idBilling, true},
		{"analytics, again", analytics, idAnalyst, true},
	}
	for i, st := range steps {
		cs, err := srv.dial(st.cfg)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		rec := srv.records()[i]
		if rec.id != st.want || rec.resumed != st.wantResumed || cs.DidResume != st.wantResumed {
			t.Errorf("%s: upstream saw %s resumed=%v (client resumed=%v), want %s resumed=%v",
				st.name, rec.id, rec.resumed, cs.DidResume, st.want, st.wantResumed)
		}
	}

	// Control: sharing billing's cache lets analytics resume billing's
	// session and be taken for billing.
	shared := ClientConfig(store.SVIDSource(idAnalyst), store.Bundles(), auth)
	shared.ClientSessionCache = billing.ClientSessionCache
	if _, err := srv.dial(shared); err != nil {
		t.Fatal(err)
	}
	recs := srv.records()
	if last := recs[len(recs)-1]; !last.resumed || last.id != idBilling {
		t.Fatalf("control: shared cache gave %s resumed=%v; the test would not notice a shared cache", last.id, last.resumed)
	}
}

// TestThreat_F2_RotationUnderLoadTLS drives real handshakes from several
// goroutines through one ClientConfig whose SVIDs live three to four
// seconds (a certificate's NotAfter has whole seconds), until the first SVID
// has been replaced and has expired, about four seconds of real time: no
// handshake fails and the upstream sees the new certificate. The upstream
// disables session tickets so that every handshake carries the certificate
// current at that moment. Renewal at half-life leaves over 1.5s of margin,
// far above a handshake's latency even under the race detector.
func TestThreat_F2_RotationUnderLoadTLS(t *testing.T) {
	ca := newStateCA(t, tdExample, 4*time.Second, nil)
	up := newUpstream(t)
	store := NewStore(ca, x509bundle.NewSet(up.bundles.Bundles()[0]), StoreOptions{})
	defer func() { _ = store.Close() }()
	first, err := store.SVID(context.Background(), Workload{ID: idBilling})
	if err != nil {
		t.Fatal(err)
	}
	firstExpiry := first.Certificates[0].NotAfter
	scfg := tlsconfig.MTLSServerConfig(up.svid, x509bundle.NewSet(ca.Bundle()), tlsconfig.AuthorizeID(idBilling))
	scfg.SessionTicketsDisabled = true
	srv := startRecServer(t, scfg)
	cfg := ClientConfig(store.SVIDSource(idBilling), store.Bundles(), AuthorizerFor(idEcho, spiffeid.TrustDomain{}))

	const workers = 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		done     = make(chan struct{})
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := srv.dial(cfg); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		}()
	}
	firstSerial := first.Certificates[0].SerialNumber.String()
	waitFor(t, "the first SVID expired and another one in use", func() bool {
		recs := srv.records()
		return time.Now().After(firstExpiry.Add(250*time.Millisecond)) &&
			len(recs) > 0 && recs[len(recs)-1].serial != firstSerial
	})
	close(done)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d handshakes failed during rotation, first: %v", len(failures), len(srv.records())+len(failures), failures[0])
	}
	serials := map[string]bool{}
	for _, r := range srv.records() {
		if r.id != idBilling {
			t.Fatalf("upstream saw %s", r.id)
		}
		serials[r.serial] = true
	}
	t.Logf("%d handshakes, %d client certificates", len(srv.records()), len(serials))
}

func TestAuthorizerFor(t *testing.T) {
	ca := newStateCA(t, tdExample, time.Hour, nil)
	up := newUpstream(t)
	other := spiffeid.RequireFromString("spiffe://upstream.test/other")
	tests := []struct {
		name     string
		serverID spiffeid.ID
		td       spiffeid.TrustDomain
		accept   bool
	}{
		{"exact ID", idEcho, spiffeid.TrustDomain{}, true},
		{"exact ID in its trust domain", idEcho, tdUpstream, true},
		{"trust domain", spiffeid.ID{}, tdUpstream, true},
		{"wrong ID", other, spiffeid.TrustDomain{}, false},
		{"wrong trust domain", spiffeid.ID{}, tdExample, false},
		{"ID outside the given trust domain", idEcho, tdExample, false},
		{"nothing configured", spiffeid.ID{}, spiffeid.TrustDomain{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundles := x509bundle.NewSet(up.bundles.Bundles()[0], ca.Bundle())
			res := handshake(t,
				tlsconfig.MTLSServerConfig(up.svid, bundles, tlsconfig.AuthorizeAny()),
				ClientConfig(mustMint(t, ca, idBilling), bundles, AuthorizerFor(tt.serverID, tt.td)))
			if tt.accept != (res.clientErr == nil) {
				t.Fatalf("client error %v, want accept=%v", res.clientErr, tt.accept)
			}
		})
	}
}
