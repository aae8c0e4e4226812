// Package proxy is procmesh's data plane: it accepts application
// connections on Unix sockets only, asks a Resolver which workload is
// calling, authorises the call with a Policy, and forwards it upstream over
// mTLS made with that workload's own SVID.
//
// The main socket speaks HTTP/1.1 as a forward proxy (absolute-form,
// origin-form routed by Host, and CONNECT, inside which the client speaks
// plaintext and procmesh originates TLS). Per-route sockets carry raw bytes.
// Upstream connection pools and TLS session caches are keyed by (SPIFFE ID,
// route) and never shared between identities (THREATS I5, I6).
//
// The identity of a connection is fixed when it is accepted: attestation
// starts at accept, and every request on the connection acts as that
// identity. Policy is evaluated per request (HTTP) and per connection
// (CONNECT and raw sockets). Every request and connection produces one audit
// line naming the workload, not a source address.
//
// The package does not read configuration files, attest processes or issue
// certificates; it consumes those through the Resolver and tlsconf.Source
// it is given.
package proxy
