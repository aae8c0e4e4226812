package upstream

import (
	"net"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/procmesh/procmesh/tlsconf"
)

// Protocols a route may speak to its upstream.
//
// The HTTP protocols (every one but ProtocolTCP) are what procmesh speaks
// upstream when it forwards requests; the client's own leg (HTTP/1.1 or
// prior-knowledge h2c on the Unix socket) is independent of it. CONNECT
// tunnels and raw sockets are always TCP with TLS, whatever the route's
// protocol; the ALPN they offer is the route's tunnel protocol (see
// Route.TunnelALPN), because procmesh cannot see what the client speaks
// inside a tunnel.
const (
	// ProtocolTCP carries bytes: CONNECT tunnels and raw sockets only.
	ProtocolTCP = "tcp"
	// ProtocolHTTP1 is HTTP/1.1 over TLS (ALPN http/1.1), with keep-alive.
	ProtocolHTTP1 = "http1"
	// ProtocolHTTP2 is HTTP/2 over TLS (ALPN h2), multiplexed; an upstream
	// that does not negotiate h2 fails the request.
	ProtocolHTTP2 = "http2"
	// ProtocolHTTP3 is HTTP/3 over QUIC (ALPN h3) to the route's Upstream
	// address, on UDP.
	ProtocolHTTP3 = "http3"
	// ProtocolAuto starts on TLS offering h2 and http/1.1, and moves to
	// HTTP/3 once the upstream advertises h3 in Alt-Svc and a QUIC
	// handshake with it has succeeded; it falls back when HTTP/3 fails.
	ProtocolAuto = "auto"
)

// SpeaksHTTP reports whether procmesh forwards HTTP requests to the route
// (every protocol but tcp).
func (r *Route) SpeaksHTTP() bool {
	switch r.Protocol {
	case ProtocolHTTP1, ProtocolHTTP2, ProtocolHTTP3, ProtocolAuto:
		return true
	}
	return false
}

// TunnelALPN is the ALPN a CONNECT tunnel or raw socket to the route offers
// upstream: none for tcp, h2 for http2 (the client inside the tunnel must
// speak prior-knowledge HTTP/2), and http/1.1 for http1, http3 and auto
// (a tunnel is TCP; the client inside it speaks HTTP/1.1).
func (r *Route) TunnelALPN() []string {
	if r.ALPN != "" {
		return strings.Split(r.ALPN, ",")
	}
	switch r.Protocol {
	case ProtocolHTTP2:
		return []string{"h2"}
	case ProtocolHTTP1, ProtocolHTTP3, ProtocolAuto:
		return []string{"http/1.1"}
	}
	return nil
}

// Route is one upstream procmesh may reach. Clients name it by Host; the
// connection goes to Upstream, whatever address the client asked for, so
// procmesh is never an open proxy (THREATS P4).
type Route struct {
	Name     string
	Host     string // lower case, no port
	Upstream string // host:port dialled for this route
	// ServerID, when set, is the only SPIFFE ID the upstream may present;
	// otherwise any ID in ServerTrustDomain is accepted.
	ServerID          spiffeid.ID
	ServerTrustDomain spiffeid.TrustDomain
	Protocol          string
	// ALPN, comma-separated, is what tunnels and raw sockets of the route
	// offer the upstream (config routes[].alpn); empty takes the
	// protocol's default (TunnelALPN). A string keeps Route comparable.
	ALPN string
	// JWTAudience, when set, is the audience (space-separated; the first
	// is the primary one) of the caller's JWT-SVID that procmesh attaches
	// to every HTTP request on the route, in the JWTHeader field (canonical
	// form; Authorization carries "Bearer <token>", another field the bare
	// token). A client-sent JWTHeader is dropped first; a request without
	// a token never goes out, and CONNECT to the route is refused (config
	// routes[].jwt_svid). Package proxy attaches it; pools only compare it.
	JWTAudience, JWTHeader string
	// Preconnect, for an http1 route, is how many TLS handshakes with the
	// upstream procmesh keeps under way, stopped where the client
	// certificate is due, for the first connection of an identity that
	// has none (preconnect.go; config routes[].preconnect). 0: none.
	Preconnect int
}

// Authorizer checks the upstream's SPIFFE ID: ServerID, or any ID in
// ServerTrustDomain.
func (r *Route) Authorizer() tlsconfig.Authorizer {
	return tlsconf.AuthorizerFor(r.ServerID, r.ServerTrustDomain)
}

// NormalHost is the form route hosts are compared in: it lower-cases a host, drops a port and a trailing dot. Only
// ASCII letters are folded: strings.ToLower would turn the Kelvin sign
// (U+212A) into "k", so "\u212Aube.test" would reach route kube.test.
// Configured hosts are ASCII, so a non-ASCII name matches none.
func NormalHost(authority string) string {
	h := authority
	if strings.IndexByte(h, ':') >= 0 {
		if host, _, err := net.SplitHostPort(authority); err == nil {
			h = host
		}
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			b := []byte(h)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			h = string(b)
			break
		}
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}
