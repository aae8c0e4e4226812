// Package proxy is procmesh's data plane: it accepts application
// connections on Unix sockets only, asks a Resolver which workload is
// calling, authorises the call with a Policy, and forwards it upstream over
// mTLS made with that workload's own SVID.
//
// The main socket speaks HTTP/1.1 and prior-knowledge HTTP/2 cleartext (so
// gRPC clients with a unix: target work) as a forward proxy: absolute-form,
// origin-form routed by Host, CONNECT (the client speaks plaintext inside
// the tunnel and procmesh originates TLS) and WebSocket upgrades.
// Per-route sockets carry raw bytes. Upstreams speak HTTP/1.1, HTTP/2,
// HTTP/3 over QUIC, or auto (h2/h1 until Alt-Svc advertises h3). Upstream
// connection pools, QUIC connections and TLS session caches are keyed by
// (SPIFFE ID, route) and never shared between identities (THREATS I5, I6);
// they live in proxy/internal/upstream.
//
// The process behind a connection is the one that called connect():
// attestation starts at accept and the Resolver checks it against the
// kernel's connect-time record. Every read carries its writer
// (SCM_CREDENTIALS): bytes another process wrote are refused, or, under
// Options.AttestForeignWriters, an HTTP/1.1 request acts as its writer
// (THREATS I11, I12; writer.go). One decide (decide.go) applies identity,
// limits, route and policy on both HTTP paths. The registration entry is
// re-checked when the entries change, and policy is evaluated per request (HTTP, on the normalised
// path) and per connection (CONNECT and raw sockets); SetState re-decides
// open tunnels and raw connections and closes what the new state no longer
// allows (F6). Limits bound headers, time, streams, connections and bodies,
// and an HTTP/1.1 framing scanner refuses the request heads that net/http
// would let through but could be smuggled (P1); on HTTP/2 a frame checker
// makes Go's server reset malformed requests and meet RFC 9113's other
// MUSTs it misses (both in proxy/internal/framing). A connection whose process has no identity
// is closed after its refusal, and such connections are bounded per uid,
// so they cannot take registered callers' connection slots (F11). Request
// fields that claim an identity (XFCC and the like) never reach an
// upstream (P9), which learns the caller from the client certificate only.
// A route with a JWTAudience gets the caller's JWT-SVID attached to each
// HTTP request, from the tlsconf.JWTSource the Source also is (jwt.go): a
// client-sent field of that name is dropped first, and without a token the
// request is not sent.
// Every request and connection produces one audit line naming the
// workload, not a source address.
//
// The package does not read configuration files, attest processes or issue
// certificates; it consumes those through the Resolver and tlsconf.Source
// it is given.
package proxy
