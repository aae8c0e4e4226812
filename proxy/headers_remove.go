package proxy

import (
	"net/http"
	"net/textproto"

	"github.com/procmesh/procmesh/internal/reqfields"
)

// Request fields that claim an identity (THREATS P9). procmesh's upstreams
// learn the caller from the client certificate procmesh presents; a field
// like X-Forwarded-Client-Cert sent by the calling process would tell an
// upstream that trusts such fields from a proxy (Envoy's XFCC modes
// ALWAYS_FORWARD_ONLY, APPEND_FORWARD) or an application behind a sidecar
// a caller nobody verified. procmesh removes them on every path (the fast
// path, net/http, h2c, WebSocket upgrades), as Envoy's
// forward_client_cert_details: SANITIZE does for XFCC.

// DefaultRequestHeadersToRemove returns the request fields removed before a
// request goes upstream unless Options.RequestHeadersToRemove says
// otherwise.
func DefaultRequestHeadersToRemove() []string { return reqfields.DefaultIdentityFields() }

// requestFilter says which client-sent request fields do not reach the
// upstream as sent: the fixed ones and the configured ones.
type requestFilter struct {
	remove map[string]bool // canonical names, configured
	skip   func(string) bool
}

// newRequestFilter builds the filter for names (nil: the default list; an
// empty list removes only the fixed fields).
func newRequestFilter(names []string) *requestFilter {
	if names == nil {
		names = DefaultRequestHeadersToRemove()
	}
	f := &requestFilter{remove: make(map[string]bool, len(names))}
	for _, n := range names {
		f.remove[textproto.CanonicalMIMEHeaderKey(n)] = true
	}
	f.skip = func(k string) bool { return reqfields.Fixed(k) || f.remove[k] }
	return f
}

// strip removes the configured fields from an outbound request's header
// (net/http's ReverseProxy removes the fixed ones itself).
func (f *requestFilter) strip(h http.Header) {
	for k := range f.remove {
		delete(h, k)
	}
}
