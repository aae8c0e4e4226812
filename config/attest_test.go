package config

import "testing"

// TestAttestErrors: the attest keys (THREATS F12) are checked like every
// other, with the exact message naming the key.
func TestAttestErrors(t *testing.T) {
	const head = "trust_domain: example.org\n"
	tests := []struct{ name, src, want string }{
		{"hash limit zero", head + "attest: {hash_size_limit: 0}\n",
			"test.yaml:2: attest.hash_size_limit: 0 is not between 1MiB and 4GiB"},
		{"hash limit huge", head + "attest: {hash_size_limit: 8GiB}\n",
			"test.yaml:2: attest.hash_size_limit: 8GiB is not between 1MiB and 4GiB"},
		{"concurrent hashes", head + "attest: {max_concurrent_hashes: 0}\n",
			"test.yaml:2: attest.max_concurrent_hashes: 0 is not between 1 and 64"},
		{"rate", head + "attest:\n  rate_per_uid: 0\n", "test.yaml:3: attest.rate_per_uid: 0 is not between 1 and 1000000"},
		{"burst", head + "attest:\n  burst_per_uid: -1\n", "test.yaml:3: attest.burst_per_uid: -1 is not between 1 and 1000000"},
		{"unknown", head + "attest:\n  hash_limit: 1MiB\n",
			`test.yaml:3: unknown key "hash_limit" in attest (known: connect_record, foreign_writer, hash_size_limit, max_concurrent_hashes, rate_per_uid, burst_per_uid)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseErr(t, tc.src); got != tc.want {
				t.Fatalf("error\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
