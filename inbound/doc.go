// Package inbound terminates mTLS from the network for local services: the
// receiving half of what a sidecar does, with procmesh's per-process rule
// turned around (THREATS N1-N4).
//
// Each Listener is one TCP address (the only TCP listeners procmesh has)
// in front of one local service's Unix socket. A connection goes through:
//
//  1. The serving process. The certificate presented is the Listener's
//     Identity, and only while the process serving the service socket is
//     attested as that identity (N3). procmesh connects to the socket and
//     reads SO_PEERCRED (and SO_PEERPIDFD) of the connection: on a client
//     socket the kernel names the process that called listen(), captured
//     then, not the one that accepts. That process is attested like a
//     caller of the egress socket (workload.Resolver.ResolvePeer: the same
//     attestor and registration entries, or SPIRE). The TLS handshake needs
//     the answer before it sends a certificate, so the handshake uses a
//     verdict cached per listening socket (the socket file's device and
//     inode) for Options.ServiceCheckTTL, 1s by default; and every
//     connection procmesh makes to the service to carry a caller's bytes is
//     attested again before anything is written on it. A socket whose
//     creator is PID 1 (systemd socket activation, or a supervisor that
//     created it) or has exited (a socket handed to another process, a
//     pre-fork server whose parent left) is refused with a message saying
//     so: procmesh cannot tell which program serves it, so the service
//     must create its own listening socket.
//  2. The caller. go-spiffe's tlsconfig verifies the caller's X509-SVID
//     against the Source's bundles (its own trust domain and the
//     trust_bundles of others: federation), TLS 1.3 only, no session
//     tickets. A caller that no rule of the Listener's policy could ever
//     allow is refused in the handshake (policy.MayAllow); the others are
//     authorised per request (HTTP: method, normalised path, headers) or
//     per connection (tcp) by the same policy engine as egress. Every
//     refusal is an audit line with the caller's SPIFFE ID, when it
//     presented one, and its address (N1). Nothing reaches the service
//     before the caller is allowed.
//  3. The identity, to the service. xfcc (HTTP): any
//     X-Forwarded-Client-Cert the caller sent is removed, as are the
//     fields of upstream.request_headers_to_remove, and one element
//     By=<Identity>;Hash=<sha256 hex of the caller's certificate
//     DER>;URI=<caller's SPIFFE ID> is set (Envoy's SANITIZE_SET; N2).
//     proxy-v2 (tcp): a PROXY protocol v2 header precedes the bytes, with
//     the caller's address and TLV 0xD0 = its SPIFFE ID (ztunnel's).
//  4. Limits. The egress limits (proxy.Limits: header bytes and fields,
//     header read and idle timeouts, request and stream idle timeouts,
//     HTTP/2 streams per connection and the rapid-reset rule, connections
//     in all and per identity, body size) bound each listener too (N4);
//     the handshake must finish within the header read timeout. Inbound
//     connections are counted apart from the Unix sockets'.
//
// HTTP is served by net/http and forwarded with httputil.ReverseProxy:
// protocol http1 takes HTTP/1.1 over TLS and speaks HTTP/1.1 to the
// service; http2 takes h2 (and HTTP/1.1) over TLS and speaks h2c (prior
// knowledge) to the service, so gRPC works end to end. tcp copies bytes.
//
// Server.Apply adds, retunes and removes listeners while running (a
// reload); Server.Shutdown drains them. The package does not read the
// config file, mint certificates or attest processes itself.
package inbound
