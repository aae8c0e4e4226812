package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"path/filepath"
	"testing"
	"time"
)

// waitReady waits until p holds n keys; the refill goroutine makes them.
func waitReady(t testing.TB, p *KeyPool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Ready() < n {
		if time.Now().After(deadline) {
			t.Fatalf("key pool holds %d keys after 10s, want %d", p.Ready(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKeyPool_FreshKeysEachTime: the pool fills to its size, and every key
// it hands out — ready ones and those generated once it ran dry — is a
// P-256 key handed out once.
func TestKeyPool_FreshKeysEachTime(t *testing.T) {
	p := NewKeyPool(KeyPoolOptions{Size: 3})
	defer p.Close()
	waitReady(t, p, 3)
	if got := p.Ready(); got != 3 {
		t.Fatalf("Ready() = %d, want the size 3", got)
	}
	p.Close() // no refill from here: the next keys come from the buffer, then inline
	seen := map[string]bool{}
	for i := range 6 {
		k, err := p.Key()
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if k.Curve != elliptic.P256() {
			t.Fatalf("key %d is on %s, want P-256", i, k.Curve.Params().Name)
		}
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(raw)] {
			t.Fatalf("key %d was handed out before", i)
		}
		seen[string(raw)] = true
		if want := max(3-(i+1), 0); p.Ready() != want {
			t.Fatalf("after key %d Ready() = %d, want %d", i, p.Ready(), want)
		}
	}
}

// TestKeyPool_Refills: keys taken are replaced in the background.
func TestKeyPool_Refills(t *testing.T) {
	p := NewKeyPool(KeyPoolOptions{Size: 2})
	defer p.Close()
	waitReady(t, p, 2)
	for range 2 {
		if _, err := p.Key(); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, p, 2)
}

// TestKeyPool_CloseIdempotent: Close stops the goroutine (it returns only
// once the goroutine has), twice is fine, and Key still works.
func TestKeyPool_CloseIdempotent(t *testing.T) {
	p := NewKeyPool(KeyPoolOptions{})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	default:
		t.Fatal("refill goroutine still running after Close")
	}
	if _, err := p.Key(); err != nil {
		t.Fatalf("Key after Close: %v", err)
	}
}

// TestMint_UsesKeyPool: a CA with a KeyPool takes each SVID's key from it,
// and the key matches the certificate.
func TestMint_UsesKeyPool(t *testing.T) {
	pool := NewKeyPool(KeyPoolOptions{Size: 4})
	defer pool.Close()
	waitReady(t, pool, 4)
	pool.Close() // freeze the count
	ca, err := LoadOrCreateCA(CAOptions{TrustDomain: tdExample, StateDir: filepath.Join(t.TempDir(), "state"), Keys: pool})
	if err != nil {
		t.Fatal(err)
	}
	svid := mustMint(t, ca, idBilling)
	if got := pool.Ready(); got != 3 {
		t.Errorf("pool holds %d keys after one Mint, want 3", got)
	}
	key, ok := svid.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(svid.Certificates[0].PublicKey) {
		t.Errorf("SVID key %T does not match its certificate", svid.PrivateKey)
	}
}
