// Package echo is a real mTLS upstream for tests and for the `make run`
// demo: it verifies the client's X509-SVID with go-spiffe's tlsconfig
// (TLS 1.3 only) and tells the client what it saw.
//
// In HTTP mode it serves HTTP/2 and HTTP/1.1 (chosen by ALPN; DisableHTTP2
// leaves HTTP/1.1 only) with keep-alive and, with Options.HTTP3, HTTP/3 over
// QUIC on UDP at the same port; it can advertise that in Alt-Svc. It answers
// every request with a JSON Response (client SPIFFE ID, method, path, host,
// protocol, a per-connection id, TLS or QUIC, whether the TLS session was
// resumed, the request headers and body length) and the header
// X-Client-SPIFFE-ID. /status/NNN answers with status NNN, /bytes/N with N
// bytes and /header-bytes/N with an N-byte response header. In TCP mode it writes
// "spiffe_id=<id>\n" after the handshake, then echoes every byte back until
// the client half-closes, then half-closes too.
//
// Every request (HTTP) or connection (TCP) is recorded; Records returns a
// copy, so tests can prove which identity reached the upstream over which
// connection (I5, I6).
//
// What it leaves out: it issues no certificates (the caller passes its SVID
// source, typically minted by tlsconf), and is not hardened for production
// traffic beyond handshake and header timeouts.
package echo
