// Package workload turns a connected Unix-socket peer into a workload
// identity: it attests the process (package attest), matches the selectors
// against the registration entries (package registry), or asks a Provider
// (SPIRE, package spire) when the Source is one, and makes sure an SVID
// can be had for the SPIFFE ID (package tlsconf): a new identity's
// SVID is minted in the background while the caller goes on (the TLS
// handshake that needs it waits for it), and an identity whose issuer is
// failing is refused. A process attested as traced or running injected code
// (THREATS I17) matches only entries that allow it (registry.Allow, from
// Needs); a connection whose connect-time record shows its task traced is
// matched as traced. User and group names are looked up only while the
// registry needs them (registry.NeedsNames), and always for a refusal. An
// executable is hashed only when an entry or rule pinned with unix:sha256
// could match the process (registry.NeedsSHA256); a reload that changes
// that adds the hash to the processes already attested.
//
// Attesting a new process spends a token of its uid's bucket
// (Options.RatePerUID, BurstPerUID; one more per HashBytesPerToken
// hashed), so one uid cannot keep procmesh busy attesting processes it
// starts (THREATS F12); over budget it gets a *RateLimitError. Known
// processes are never limited.
//
// Results are cached per process in a bounded LRU keyed by
// attest.Fingerprint, so a new connection from a known process costs a few
// syscalls instead of /proc reads and a hash. A fingerprint changes when the
// PID is reused or the process execs another file, so a cached attestation is
// never handed to a different process image. Entries expire after a TTL and
// are swept when their process exits.
//
// The package leaves out what happens with the identity: connection
// handling, upstream TLS and policy live in package proxy.
package workload
