package config

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decoding of upstream.tls_curves: the key exchanges procmesh offers
// upstreams, by the names operators know from OpenSSL, HAProxy and nginx.

type curveEntry struct {
	id    tls.CurveID
	names []string
}

// curveNames lists the key exchanges tls_curves accepts, each under its
// name as messages show it, then the other spellings accepted for it
// (case-insensitively; OpenSSL's and Go's names).
func curveNames() []curveEntry {
	return []curveEntry{
		{tls.X25519, []string{"X25519"}},
		{tls.CurveP256, []string{"P-256", "prime256v1", "secp256r1", "CurveP256"}},
		{tls.CurveP384, []string{"P-384", "secp384r1", "CurveP384"}},
		{tls.CurveP521, []string{"P-521", "secp521r1", "CurveP521"}},
		{tls.X25519MLKEM768, []string{"X25519MLKEM768"}},
		{tls.SecP256r1MLKEM768, []string{"SecP256r1MLKEM768"}},
		{tls.SecP384r1MLKEM1024, []string{"SecP384r1MLKEM1024"}},
	}
}

// curveName is the name configs/example.yaml uses for id, or id's Go name
// for one tls_curves does not accept.
func curveName(id tls.CurveID) string {
	for _, c := range curveNames() {
		if c.id == id {
			return c.names[0]
		}
	}
	return id.String()
}

// curveID looks a name up, ignoring case.
func curveID(name string) (tls.CurveID, bool) {
	for _, c := range curveNames() {
		for _, n := range c.names {
			if strings.EqualFold(n, name) {
				return c.id, true
			}
		}
	}
	return 0, false
}

// curveList is "X25519, P-256, ..." for messages.
func curveList() string {
	var names []string
	for _, c := range curveNames() {
		names = append(names, c.names[0])
	}
	return strings.Join(names, ", ")
}

// curves reads a list of key exchange names. Absent, null or [] is nil:
// Go's default list.
func (w *walker) curves(n *yaml.Node, path string) []tls.CurveID {
	items, _ := w.list(n, path)
	var out []tls.CurveID
	for i, item := range items {
		key := fmt.Sprintf("%s[%d]", path, i)
		s, ok := w.str(item, key)
		if !ok {
			continue
		}
		id, known := curveID(s)
		switch {
		case !known:
			w.add(item.Line, key, "%q is not a key exchange procmesh knows; use one of %s", s, curveList())
		case slices.Contains(out, id):
			w.add(item.Line, key, "%s is listed twice", curveName(id))
		default:
			out = append(out, id)
		}
	}
	return out
}
