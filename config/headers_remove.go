package config

import (
	"fmt"
	"net/textproto"
	"slices"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"

	"github.com/procmesh/procmesh/internal/reqfields"
)

// Decoding of upstream.request_headers_to_remove: the request fields that
// claim an identity and never reach an upstream (THREATS P9).

// DefaultRequestHeadersToRemove returns the default of
// upstream.request_headers_to_remove.
func DefaultRequestHeadersToRemove() []string { return reqfields.DefaultIdentityFields() }

// requestHeadersToRemove reads a list of header names, stored canonical.
// Absent or null is nil (the default list); [] is an empty, non-nil list.
func (w *walker) requestHeadersToRemove(n *yaml.Node, path string) []string {
	items, ok := w.list(n, path)
	if !ok {
		return nil
	}
	out := []string{}
	for i, item := range items {
		key := fmt.Sprintf("%s[%d]", path, i)
		s, ok := w.str(item, key)
		if !ok {
			continue
		}
		canon := textproto.CanonicalMIMEHeaderKey(s)
		switch {
		case !httpguts.ValidHeaderFieldName(s):
			w.add(item.Line, key, "%q is not a header field name; write the name alone, like X-Forwarded-Client-Cert", s)
		case reqfields.Fixed(canon):
			w.add(item.Line, key, "%s is a hop-by-hop, framing or Forwarded field, which procmesh always removes or writes itself; leave it out", canon)
		case slices.Contains(out, canon):
			w.add(item.Line, key, "%s is listed twice (header names are case-insensitive)", canon)
		default:
			out = append(out, canon)
		}
	}
	return out
}
