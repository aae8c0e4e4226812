package tlsconf

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// BenchmarkNewIdentityHandshake is the identity part of procmesh's cold
// path, both ends in this process: a SPIFFE ID never seen before, its SVID
// prefetched and minted, and a full mTLS handshake with it to an upstream
// that accepts X25519 only (as the benchmark suite's). "default" offers
// Go's key exchanges (an ML-KEM share too), "X25519" what
// upstream.tls_curves: [X25519] offers.
func BenchmarkNewIdentityHandshake(b *testing.B) {
	upCA := newStateCA(b, tdUpstream, time.Hour, nil)
	upSVID := mustMint(b, upCA, idEcho)
	ca := newStateCA(b, tdExample, time.Hour, nil)
	serverCfg := tlsconfig.MTLSServerConfig(upSVID, x509bundle.NewSet(ca.Bundle()), tlsconfig.AuthorizeMemberOf(tdExample))
	serverCfg.CurvePreferences = []tls.CurveID{tls.X25519}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{'k'})
				}
			}()
		}
	}()
	bundles := x509bundle.NewSet(ca.Bundle(), upCA.Bundle())
	for _, tt := range []struct {
		name   string
		curves []tls.CurveID
	}{{"default", nil}, {"X25519", []tls.CurveID{tls.X25519}}} {
		b.Run(tt.name, func(b *testing.B) {
			store := NewStore(ca, bundles, StoreOptions{})
			defer store.Close()
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				id := spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/cold/%s/%d", tt.name, n))
				if err := store.Prefetch(Workload{ID: id}); err != nil {
					b.Fatal(err)
				}
				cfg := ClientConfig(store.SVIDSource(id), store.Bundles(), tlsconfig.AuthorizeID(idEcho))
				cfg.CurvePreferences = tt.curves
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				c := tls.Client(raw, cfg)
				var one [1]byte
				if _, err := io.ReadFull(c, one[:]); err != nil {
					b.Fatalf("handshake as %s: %v", id, err)
				}
				c.Close()
			}
		})
	}
}
