// Package reqfields names the request header fields procmesh never passes
// to an upstream as a client sent them, so the config's validation and the
// proxy's forwarding agree on one list. It leaves out removing them (package
// proxy) and reading the configured list (package config).
package reqfields

// DefaultIdentityFields returns the default of
// upstream.request_headers_to_remove: fields that claim an identity
// (THREATS P9): XFCC (Envoy, Istio), the SPIFFE ID fields of other
// sidecars and the client-address field of nginx-style proxies.
func DefaultIdentityFields() []string {
	return []string{"X-Forwarded-Client-Cert", "X-Spiffe-Id", "X-Client-Spiffe-Id", "X-Real-Ip"}
}

// Fixed reports the fields (canonical form) removed, or rewritten from the
// message's framing, whatever the configuration: hop-by-hop fields (P2),
// framing fields and client-sent Forwarded and X-Forwarded-* fields.
func Fixed(canon string) bool {
	switch canon {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host", "Http2-Settings",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}
