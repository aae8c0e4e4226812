package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// Parsers of names: trust domains, SPIFFE IDs (THREATS I9), route names,
// host names and upstream addresses.

// maxIDLength is the SPIFFE limit on the length of a SPIFFE ID.
const maxIDLength = 2048

func (w *walker) trustDomain(n *yaml.Node, path string) (spiffeid.TrustDomain, bool) {
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return spiffeid.TrustDomain{}, ok
	}
	if strings.Contains(s, ":/") {
		w.add(n.Line, path, "%q is a SPIFFE ID; write the trust domain name alone, like example.org", s)
		return spiffeid.TrustDomain{}, false
	}
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		msg := fmt.Sprintf("%q is not a trust domain name: %v", s, err)
		if lower := strings.ToLower(s); lower != s {
			if _, err := spiffeid.TrustDomainFromString(lower); err == nil {
				msg += fmt.Sprintf("; write it as %s", lower)
			}
		}
		w.add(n.Line, path, "%s", msg)
		return spiffeid.TrustDomain{}, false
	}
	return td, true
}

// spiffeID parses a canonical SPIFFE ID with a path (THREATS I9); "" is
// the zero ID. noPath is advice for an ID that names only a trust domain.
func (w *walker) spiffeID(n *yaml.Node, path, noPath string) (spiffeid.ID, bool) {
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return spiffeid.ID{}, ok
	}
	if len(s) > maxIDLength {
		w.add(n.Line, path, "SPIFFE ID is %d bytes; at most %d are allowed", len(s), maxIDLength)
		return spiffeid.ID{}, false
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		msg := fmt.Sprintf("%q is not a canonical SPIFFE ID: %v", s, err)
		if fixed, ok := lowerTrustDomain(s); ok {
			msg += "; write it as " + fixed
		}
		w.add(n.Line, path, "%s", msg)
		return spiffeid.ID{}, false
	}
	if id.Path() == "" {
		w.add(n.Line, path, "%s names a trust domain, not a workload; %s", s, noPath)
		return spiffeid.ID{}, false
	}
	return id, true
}

// lowerTrustDomain returns s with its trust domain lowercased when that
// alone makes it a valid ID: trust domain names are case-insensitive DNS-like
// names, so the rewrite names the same thing. Paths are never rewritten.
func lowerTrustDomain(s string) (string, bool) {
	const scheme = "spiffe://"
	if !strings.HasPrefix(strings.ToLower(s), scheme) {
		return "", false
	}
	rest := s[len(scheme):]
	td, p, _ := strings.Cut(rest, "/")
	fixed := scheme + strings.ToLower(td)
	if strings.Contains(rest, "/") {
		fixed += "/" + p
	}
	if fixed == s {
		return "", false
	}
	if _, err := spiffeid.FromString(fixed); err != nil {
		return "", false
	}
	return fixed, true
}

// hostPort accepts an upstream address: host (name or IP) and numeric port.
func (w *walker) hostPort(n *yaml.Node, path string) (string, bool) {
	s, ok := w.str(n, path)
	if !ok {
		return "", false
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " /\t") {
		w.add(n.Line, path, "%q is not host:port; write it as 127.0.0.1:8443", s)
		return "", false
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		w.add(n.Line, path, "port %q of %q is not a number between 1 and 65535", port, s)
		return "", false
	}
	return s, true
}

// label accepts a DNS label: 1-63 lowercase letters, digits and '-', not
// starting or ending with '-'. what names the thing in messages.
func (w *walker) label(n *yaml.Node, path, what, example string) (string, bool) {
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return "", ok
	}
	if !isLabel(s) {
		w.add(n.Line, path, "%q is not a valid %s; use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit, like %q", s, what, example)
		return "", false
	}
	return s, true
}

func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// hostName accepts the name clients use for a route: a lowercase DNS name
// (or IPv4 address), without port or trailing dot.
func (w *walker) hostName(n *yaml.Node, path string) (string, bool) {
	s, ok := w.str(n, path)
	if !ok || s == "" {
		return "", ok
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		w.add(n.Line, path, "%q has a port; host is the name clients use, without port (the port belongs in upstream)", s)
		return "", false
	}
	if lower := strings.ToLower(s); lower != s {
		if isHostName(lower) {
			w.add(n.Line, path, "%q must be lowercase; write it as %s", s, lower)
			return "", false
		}
	}
	if !isHostName(s) {
		w.add(n.Line, path, "%q is not a host name; use lowercase DNS labels separated by dots, like echo.test", s)
		return "", false
	}
	return s, true
}

func isHostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isLabel(strings.ReplaceAll(l, "_", "x")) {
			return false
		}
	}
	return true
}
