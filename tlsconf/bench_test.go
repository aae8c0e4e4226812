package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"testing"
	"time"
)

func BenchmarkMint(b *testing.B) {
	ca := newStateCA(b, tdExample, time.Hour, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.Mint(idBilling); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMintKeyReady is Mint on the request path when the CA's KeyPool
// has a key ready: what a new identity waits for. The pool is filled with
// the timer stopped and its refill goroutine stopped, so the figure holds
// no key generation, neither inline nor in the background.
func BenchmarkMintKeyReady(b *testing.B) {
	const size = 64
	ca := newStateCA(b, tdExample, time.Hour, nil)
	b.ReportAllocs()
	for b.Loop() {
		if ca.keys == nil || ca.keys.Ready() == 0 {
			b.StopTimer()
			pool := NewKeyPool(KeyPoolOptions{Size: size})
			waitReady(b, pool, size)
			pool.Close()
			ca.keys = pool
			b.StartTimer()
		}
		if _, err := ca.Mint(idBilling); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign compares the two ways of signing an SVID with a P-256 CA
// key: x509.CreateCertificate (which verifies its own signature) and
// signECDSA (which does not; see sign.go).
func BenchmarkSign(b *testing.B) {
	ca := newStateCA(b, tdExample, time.Hour, nil)
	key := ca.signer.(*ecdsa.PrivateKey)
	tmpl, pub := svidTemplate(b), newKey(b).Public()
	b.Run("CreateCertificate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := signVerified(tmpl, ca.cert, pub, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signECDSA", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := signECDSA(tmpl, ca.cert, pub, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkStoreHit(b *testing.B) {
	s, ctx, w := warmStore(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SVID(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStoreHitParallel(b *testing.B) {
	s, ctx, w := warmStore(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.SVID(ctx, w); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// warmStore is a Store that already holds billing's SVID, closed when b
// ends.
func warmStore(b *testing.B) (*Store, context.Context, Workload) {
	b.Helper()
	s := NewStore(newStateCA(b, tdExample, time.Hour, nil), nil, StoreOptions{})
	b.Cleanup(func() { _ = s.Close() })
	ctx, w := context.Background(), Workload{ID: idBilling}
	if _, err := s.SVID(ctx, w); err != nil {
		b.Fatal(err)
	}
	return s, ctx, w
}
