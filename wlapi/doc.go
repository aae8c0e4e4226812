// Package wlapi serves the SPIFFE Workload API (the SpiffeWorkloadAPI gRPC
// service of go-spiffe's proto/spiffe/workload) on a Unix socket, per
// process: every caller is attested as an egress caller is, by the same
// workload.Resolver (the connect-time record, the process's fingerprint,
// then procmesh's registration entries or the SPIRE provider), and gets
// only its own SVID, with the bundle of its own trust domain (THREATS
// I13).
//
// How a caller is bound to its connection:
//
//   - At the gRPC handshake (TransportCredentials.ServerHandshake) the
//     connection is attested once, since the kernel's connect-time record
//     is consumed by the lookup, and the connecting process is pinned by
//     a pidfd (SO_PEERPIDFD; pidfd_open where the kernel lacks it).
//   - Every read of the connection is attributed to its writer
//     (SO_PASSCRED, package credread): bytes written by any other process
//     than the one that connected (a socket passed over SCM_RIGHTS,
//     inherited, taken with pidfd_getfd) fail the read, and gRPC closes
//     the connection before it decodes them (THREATS I12). What this does
//     not cover: a process the connecting one shares its socket with can
//     read the answers to requests the connecting process made itself, as
//     it could read anything else that process chose to give it.
//   - Every RPC, and every stream message before it is sent, checks that
//     the pinned process is still the one attested (pidfd not exited, the
//     fingerprint unchanged: no exec, no PID reuse, as SPIRE's IsAlive)
//     and still has its identity under the registration entries in force
//     (a reload that removes its entry ends its streams with
//     PermissionDenied). A stream ends when its process exits.
//   - A connection whose process could not be attested to an identity is
//     refused on every RPC with PermissionDenied and the reason (for a
//     process without an entry, its selectors, as egress refusals say).
//     When the refusal was "no entry", each RPC asks again by PID, with
//     the fingerprint pinned at the handshake, so an entry added later is
//     found without a new connection. Such connections count per uid
//     (Options.MaxUnattestedPerUID) and one over the bound is closed at
//     the handshake. So is one whose attestation failed for a reason that
//     passes (its uid's attestation budget, THREATS F12; a slow
//     provider): the client's retry comes on a new connection.
//
// Every RPC needs the metadata "workload.spiffe.io: true"
// (InvalidArgument otherwise, checked before anything else). Streams send
// the full state in every message, and a new message when the SVID
// rotates or the bundle changes, found by polling the Source every
// Options.Poll (which also drives the builtin Store's renewal at
// half-life). The JWT RPCs need a Source that implements
// tlsconf.JWTSource; with one that does not they answer Unavailable. The
// WIT RPCs answer Unimplemented.
//
// The X509-SVID's private key leaves procmesh here, and only here, to the
// attested process itself; it is never logged. Each RPC, and each X509-SVID
// message sent, writes an audit line (identity, pid, rpc, outcome).
//
// What it leaves out: a switch per identity (every process with an
// identity may fetch its own credentials), a bound on the connections of
// one identity (MaxConcurrentStreams bounds RPCs per connection),
// federated bundles (the trust_bundles of the config are for procmesh's
// routes, not handed to workloads), CRLs, and the socket's creation
// (cmd/procmesh creates it with proxy.Listen, which turns SO_PASSCRED on
// before any client can connect).
package wlapi
