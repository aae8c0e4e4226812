// Package upstream is the one mTLS server every contestant of the benchmark
// suite talks to, built to spend as little CPU as it can on the shared cores
// so that differences between contestants show:
//
//   - HTTP/1.1 over TLS (ALPN http/1.1 only), a hand-written keep-alive
//     responder that answers every request with a fixed body;
//   - HTTP/2 over TLS (ALPN h2 only) and HTTP/3 over QUIC, net/http and
//     quic-go's http3 with the same fixed body;
//   - an L4 sink over TLS that counts bytes and acknowledges every MiB
//     (see L4Proto), so a client can time bulk transfers end to end
//     without relying on half-close through a proxy.
//
// Every listener requires a client X509-SVID of the benchmark's trust domain
// (go-spiffe tlsconfig), accepts TLS 1.3 only and offers only X25519, so a
// client offering X25519MLKEM768 (Go's default) falls back to X25519 like
// OpenSSL 3.0 peers. Every handshake is counted by client SPIFFE ID, TLS
// version, cipher suite, key exchange, ALPN and resumption (Stats), which is
// how the suite checks that the contestants were measured on equal terms.
//
// It leaves out anything the suite does not measure: routing, logging,
// request bodies beyond discarding them.
package upstream
