package config

import "go.yaml.in/yaml/v3"

// Defaults of the attest section.
const (
	// DefaultConnectRecord keeps the kernel's connect-time record where the
	// kernel allows it (THREATS I11).
	DefaultConnectRecord = "auto"
	// DefaultForeignWriter refuses bytes another process than the
	// connecting one wrote (THREATS I12).
	DefaultForeignWriter = "refuse"
	// DefaultHashSizeLimit is 128 MiB: above the largest service binaries in
	// common use (node 99 MB; kubelet, envoy and large Go or Rust services
	// 50-110 MB), half of the 256 MiB procmesh hashed before (THREATS F12).
	DefaultHashSizeLimit       = 128 << 20
	DefaultMaxConcurrentHashes = 2
	DefaultRatePerUID          = 100
	DefaultBurstPerUID         = 1000
)

// Attest says how callers are attested and bounds what attesting them can
// cost procmesh. An executable is hashed only when an entry or policy rule
// with a unix:sha256 selector could match its process; the hash keys bound
// the rest (THREATS F12).
type Attest struct {
	// ConnectRecord: "auto" (default) keeps the kernel's connect-time
	// record where the kernel allows it, "required" refuses to start
	// without it, "off" never loads it (THREATS I11).
	ConnectRecord string
	// ForeignWriter: "refuse" (default) refuses bytes on a connection that
	// another process than the connecting one wrote (THREATS I12);
	// "attest" attests an HTTP/1.1 request of another writer as that
	// writer.
	ForeignWriter string

	HashSizeLimit       int64 // key hash_size_limit; default 128MiB; 1MiB-4GiB; larger executables get no unix:sha256 selector
	MaxConcurrentHashes int   // key max_concurrent_hashes; default 2; 1-64; executables read at once, others wait
	RatePerUID          int   // key rate_per_uid; default 100; 1-1000000; new processes attested per second per uid
	BurstPerUID         int   // key burst_per_uid; default 1000; 1-1000000; hashing costs one more per MiB read
	Line                int   // line of the attest section; 0 when absent
}

func (w *walker) attest(n *yaml.Node, a *Attest) {
	f, ok := w.mapping(n, "attest", keys("attest")...)
	if !ok {
		return
	}
	a.Line = f.line
	a.ConnectRecord, _ = w.oneOf(f.get("connect_record"), f.key("connect_record"), []string{"auto", "required", "off"}, nil)
	a.ForeignWriter, _ = w.oneOf(f.get("foreign_writer"), f.key("foreign_writer"), []string{"refuse", "attest"}, nil)
	a.HashSizeLimit, _ = w.size(f.get("hash_size_limit"), f.key("hash_size_limit"), mib, 4*gib, false)
	a.MaxConcurrentHashes, _ = w.integer(f.get("max_concurrent_hashes"), f.key("max_concurrent_hashes"), 1, 64)
	a.RatePerUID, _ = w.integer(f.get("rate_per_uid"), f.key("rate_per_uid"), 1, 1_000_000)
	a.BurstPerUID, _ = w.integer(f.get("burst_per_uid"), f.key("burst_per_uid"), 1, 1_000_000)
}

// applyAttestDefaults fills the attest section's absent keys.
func (c *Config) applyAttestDefaults() {
	a := &c.Attest
	if a.ConnectRecord == "" {
		a.ConnectRecord = DefaultConnectRecord
	}
	if a.ForeignWriter == "" {
		a.ForeignWriter = DefaultForeignWriter
	}
	if a.HashSizeLimit == 0 {
		a.HashSizeLimit = DefaultHashSizeLimit
	}
	if a.MaxConcurrentHashes == 0 {
		a.MaxConcurrentHashes = DefaultMaxConcurrentHashes
	}
	if a.RatePerUID == 0 {
		a.RatePerUID = DefaultRatePerUID
	}
	if a.BurstPerUID == 0 {
		a.BurstPerUID = DefaultBurstPerUID
	}
}
