//go:build linux

package attest

import "testing"

func benchPeer(b *testing.B, a *Attestor) (*Peer, Fingerprint) {
	b.Helper()
	c := spawn(b, spawnOpts{})
	p, err := ReadPeer(c.conn, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	fp, err := a.Fingerprint(p)
	if err != nil {
		b.Fatal(err)
	}
	return p, fp
}

// BenchmarkFingerprint is the per-connection cost when the workload cache
// hits: the Fingerprint is all that is computed.
func BenchmarkFingerprint(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{{"pidfd", Options{}}, {"start time", Options{DisablePIDFD: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			a := New(bc.opts)
			p, _ := benchPeer(b, a)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Fingerprint(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAttest is a workload cache miss with the hash cache warm.
func BenchmarkAttest(b *testing.B) {
	a := New(Options{})
	p, fp := benchPeer(b, a)
	if _, err := a.Attest(p, fp); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Attest(p, fp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttestColdHash is a miss of both caches: the executable (the
// test binary) is hashed every time.
func BenchmarkAttestColdHash(b *testing.B) {
	a := New(Options{})
	p, fp := benchPeer(b, a)
	b.ReportAllocs()
	for b.Loop() {
		a.hashes.Purge()
		if _, err := a.Attest(p, fp); err != nil {
			b.Fatal(err)
		}
	}
}
