package tlsconf

import (
	"context"
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

func BenchmarkStoreHit(b *testing.B) {
	ca := newStateCA(b, tdExample, time.Hour, nil)
	s := NewStore(ca, nil, StoreOptions{})
	defer func() { _ = s.Close() }()
	ctx, w := context.Background(), Workload{ID: idBilling}
	if _, err := s.SVID(ctx, w); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SVID(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStoreHitParallel(b *testing.B) {
	ca := newStateCA(b, tdExample, time.Hour, nil)
	s := NewStore(ca, nil, StoreOptions{})
	defer func() { _ = s.Close() }()
	ctx, w := context.Background(), Workload{ID: idBilling}
	if _, err := s.SVID(ctx, w); err != nil {
		b.Fatal(err)
	}
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
