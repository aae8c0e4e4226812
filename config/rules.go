package config

import (
	"errors"
	"fmt"
	"net/textproto"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/registry"
)

// Decoding of policy.rules[]: each condition is checked on its own here,
// with its own line; Validate checks the rules against each other and
// against the routes (see validatePolicy).

func (w *walker) rule(n *yaml.Node, path string) Rule { return w.ruleOf(n, path, "policy.rules[]") }

// ruleOf decodes a rule of section: "policy.rules[]", or
// "inbound[].policy.rules[]", whose rules have no to (the inbound listener
// is the route) and no selectors (a remote caller has none on this node).
func (w *walker) ruleOf(n *yaml.Node, path, section string) Rule {
	inbound := section != "policy.rules[]"
	r := Rule{Line: n.Line}
	f, ok := w.mapping(n, path, keys(section)...)
	if !ok {
		w.notNull(n, path)
		return r
	}
	r.Name, _ = w.label(f.get("name"), f.key("name"), "rule name", "billing-to-echo")

	fromNode, selNode := f.get("from"), f.get("selectors")
	if inbound && fromNode == nil && !f.written["from"] {
		w.add(f.line, path, `missing required key "from" (callers' SPIFFE IDs or prefixes, like ["spiffe://example.org/frontend", "spiffe://partner.test/*"])`)
	} else if fromNode == nil && selNode == nil && !f.written["from"] && !f.written["selectors"] {
		w.add(f.line, path, `missing required key "from" (callers' SPIFFE IDs or prefixes, like ["spiffe://example.org/billing", "spiffe://example.org/team-a/*"]; or set selectors)`)
	}
	froms, fromOK := w.list(fromNode, f.key("from"))
	for i, item := range froms {
		if c, ok := w.caller(item, fmt.Sprintf("%s[%d]", f.key("from"), i)); ok {
			r.From = append(r.From, c)
		}
	}
	sels, selOK := w.list(selNode, f.key("selectors"))
	r.Selectors = w.ruleSelectors(sels, f.key("selectors"))
	if (fromOK || selOK) && len(froms) == 0 && len(sels) == 0 {
		line := f.line
		if fromNode != nil {
			line = fromNode.Line
		}
		w.add(line, path, "no callers: list SPIFFE IDs or prefixes in from, or selectors")
	}

	var v *yaml.Node
	if !inbound {
		v = w.require(f, "to", `route names, like ["echo"]`)
	}
	items, ok := w.list(v, f.key("to"))
	if v != nil && ok && len(items) == 0 {
		w.add(v.Line, f.key("to"), "empty; list the route names this rule allows")
	}
	for i, item := range items {
		key := fmt.Sprintf("%s[%d]", f.key("to"), i)
		switch s, ok := w.str(item, key); {
		case ok && s == "":
			w.add(item.Line, key, "empty route name")
		case ok && slices.Contains(r.To, s):
			w.add(item.Line, key, "route %q is listed twice", s)
		case ok:
			r.To = append(r.To, s)
		}
	}

	r.Methods = w.stringList(f.get("methods"), f.key("methods"), policy.MethodProblem)
	r.Paths = w.stringList(f.get("paths"), f.key("paths"), policy.PathPatternProblem)
	r.Headers = w.headers(f.get("headers"), f.key("headers"))
	r.Mode, _ = w.oneOf(f.get("mode"), f.key("mode"), []string{"enforce", "audit"}, nil)
	return r
}

// caller parses one entry of from: a canonical SPIFFE ID (THREATS I9), or
// one followed by "/*" for the IDs under it.
func (w *walker) caller(n *yaml.Node, path string) (Caller, bool) {
	s, ok := w.str(n, path)
	switch {
	case !ok:
		return Caller{}, false
	case s == "":
		w.add(n.Line, path, "empty SPIFFE ID")
		return Caller{}, false
	case len(s) > maxIDLength:
		w.add(n.Line, path, "SPIFFE ID is %d bytes; at most %d are allowed", len(s), maxIDLength)
		return Caller{}, false
	}
	base, prefix := strings.CutSuffix(s, "/*")
	if strings.Contains(base, "*") {
		w.add(n.Line, path, "%q: * is only allowed as the whole last segment, like spiffe://example.org/team-a/*", s)
		return Caller{}, false
	}
	id, err := spiffeid.FromString(base)
	if err != nil {
		msg := fmt.Sprintf("%q is not a canonical SPIFFE ID: %v", s, err)
		if fixed, ok := lowerTrustDomain(base); ok {
			if prefix {
				fixed += "/*"
			}
			msg += "; write it as " + fixed
		}
		w.add(n.Line, path, "%s", msg)
		return Caller{}, false
	}
	if !prefix && id.Path() == "" {
		w.add(n.Line, path, "%s names a trust domain, not a workload; write %s/* for every ID in it", s, s)
		return Caller{}, false
	}
	return Caller{ID: id, Prefix: prefix}, true
}

// ruleSelectors checks each selector and that a process can have them all.
func (w *walker) ruleSelectors(items []*yaml.Node, path string) []string {
	var out []string
	bad := false
	for i, item := range items {
		key := fmt.Sprintf("%s[%d]", path, i)
		s, ok := w.selector(item, key)
		if !ok {
			bad = true
			continue
		}
		if slices.Contains(out, s) {
			w.add(item.Line, key, "%q is listed twice", s)
			bad = true
			continue
		}
		out = append(out, s)
	}
	if !bad && len(out) > 0 {
		// The registry knows which selector types a process has once:
		// asking for two values of one can never match.
		_, err := registry.New([]registry.Entry{{ID: spiffeid.RequireFromString("spiffe://rule.invalid/x"), Selectors: out}})
		var ee *registry.EntryError
		if errors.As(err, &ee) {
			w.add(items[0].Line, path, "%s", strings.ReplaceAll(ee.Reason, "the entry", "the rule"))
		}
	}
	return out
}

// stringList reads a list of strings, each checked by problem ("" = fine),
// without duplicates.
func (w *walker) stringList(n *yaml.Node, path string, problem func(string) string) []string {
	items, _ := w.list(n, path)
	var out []string
	for i, item := range items {
		key := fmt.Sprintf("%s[%d]", path, i)
		s, ok := w.str(item, key)
		if !ok {
			continue
		}
		switch reason := problem(s); {
		case reason != "":
			w.add(item.Line, key, "%s", reason)
		case slices.Contains(out, s):
			w.add(item.Line, key, "%q is listed twice", s)
		default:
			out = append(out, s)
		}
	}
	return out
}

// headers reads header conditions: a mapping of header names (any case,
// stored canonical) to exact values.
func (w *walker) headers(n *yaml.Node, path string) map[string]string {
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		w.wrongKind(n, path, `a mapping of header names to values, like {x-env: prod}`)
		return nil
	}
	out := map[string]string{}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			w.add(k.Line, path, "header name %s is not a name; quote it", describe(k))
			continue
		}
		key := child(path, k.Value)
		if v.Kind == yaml.AliasNode {
			w.add(v.Line, key, "aliases (*%s) are not supported; write the value out", v.Value)
			continue
		}
		val, ok := w.str(v, key)
		if !ok {
			continue
		}
		canon := textproto.CanonicalMIMEHeaderKey(k.Value)
		if first, dup := lines[canon]; dup {
			w.add(k.Line, key, "%s is already set at line %d (header names are case-insensitive)", canon, first)
			continue
		}
		if reason := policy.HeaderProblem(k.Value, val); reason != "" {
			w.add(v.Line, key, "%s", reason)
			continue
		}
		lines[canon] = k.Line
		out[canon] = val
	}
	return out
}

// alpn reads a route's ALPN protocol IDs (RFC 7301: 1-255 bytes; here
// printable ASCII without spaces, as every registered ID is).
func (w *walker) alpn(n *yaml.Node, path string) []string {
	items, _ := w.list(n, path)
	var out []string
	for i, item := range items {
		key := fmt.Sprintf("%s[%d]", path, i)
		s, ok := w.str(item, key)
		if !ok {
			continue
		}
		printable := len(s) > 0
		for k := 0; k < len(s); k++ {
			if s[k] <= ' ' || s[k] >= 0x7f {
				printable = false
			}
		}
		switch {
		case len(s) == 0 || len(s) > 255 || !printable:
			w.add(item.Line, key, "%q is not an ALPN protocol ID; use 1-255 printable characters, like h2 or http/1.1", s)
		case s == "h3":
			w.add(item.Line, key, "h3 runs over QUIC, not over a TCP tunnel or socket; use protocol: http3 for HTTP/3")
		case slices.Contains(out, s):
			w.add(item.Line, key, "%q is listed twice", s)
		default:
			out = append(out, s)
		}
	}
	return out
}
