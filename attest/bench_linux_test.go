//go:build linux

package attest

import (
	"strings"
	"testing"
)

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

// BenchmarkAttestInCgroup is BenchmarkAttest for a process in a kubelet
// pod's container cgroup (systemd layout): the ids' directories, four
// deep, are walked for their owners on every attestation (I15).
func BenchmarkAttestInCgroup(b *testing.B) {
	mount := v2Mount(b)
	cid, pod := randHex(b, 32), randUUID(b)
	dir := cgroupDir(b, mount, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"+
		strings.ReplaceAll(pod, "-", "_")+".slice/cri-containerd-"+cid+".scope")
	a := New(Options{})
	c := spawn(b, spawnOpts{cgroup: dir})
	p, err := ReadPeer(c.conn, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	fp, err := a.Fingerprint(p)
	if err != nil {
		b.Fatal(err)
	}
	proc, err := a.Attest(p, fp)
	if err != nil {
		b.Fatal(err)
	}
	if proc.ContainerID != cid || proc.PodUID != pod {
		b.Fatalf("attested container %q pod %q, want %q %q", proc.ContainerID, proc.PodUID, cid, pod)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Attest(p, fp); err != nil {
			b.Fatal(err)
		}
	}
}
