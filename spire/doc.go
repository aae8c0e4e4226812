// Package spire is procmesh's SPIRE identity source: a tlsconf.Source and
// workload.Provider over the SPIRE agent's Delegated Identity API (its
// admin socket), so that SPIRE's attestors decide who a local process is
// and procmesh carries its traffic.
//
// For every live process procmesh attests, Identify opens one
// SubscribeToX509SVIDs stream by pid (never by selectors procmesh computed:
// with selectors SPIRE would check nothing). The process is pinned by a
// pidfd opened when the stream starts; the stream is cancelled when the
// pidfd reports the process exited, and every answer is discarded unless
// the process is still the one procmesh fingerprinted afterwards (same
// start time, credentials and executable), because SPIRE attests the PID
// when the stream starts and does not guard against PID reuse or exec
// (THREATS I14). An answer with no SVID means no SPIRE registration entry
// matches the process: Identify refuses it with workload.ErrNoIdentity; so
// does an answer with several SVIDs (several entries match: a tie, which
// procmesh refuses as it does among its own entries).
// The first answer is awaited for Options.FirstMessageTimeout.
//
// SVIDs are kept per SPIFFE ID, the most recently issued one winning, so a
// rotation SPIRE pushes on any stream is used by the next handshake, and
// pools are not rebuilt. One SubscribeToX509Bundles stream replaces the
// trust bundles (federated ones included) atomically; static bundles from
// the configuration are added to them. When the agent restarts or its
// socket goes away, still-valid SVIDs keep serving and every stream
// re-subscribes with exponential backoff and jitter; an expired SVID is
// refused with an error naming the agent and what went wrong.
//
// JWT-SVIDs (tlsconf.JWTSource) come from FetchJWTSVIDs by the PID of a
// process the Source tracks, under the same pidfd and fingerprint rule;
// one SubscribeToJWTBundles stream replaces the JWT bundles atomically.
//
// What it leaves out: it never creates registration entries (they live in
// SPIRE).
package spire
