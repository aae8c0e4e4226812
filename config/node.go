package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// walker checks yaml nodes against the expected shape and records problems.
// A value of the wrong kind is reported once and then treated as absent, so
// one mistake does not cascade into several.
type walker struct {
	*problems
}

// fields is a mapping's values by key, with the mapping's line for
// "missing key" problems.
type fields struct {
	path    string // key path of the mapping, "" at the top level
	line    int
	vals    map[string]*yaml.Node
	written map[string]bool // keys present, including those whose value was refused
}

// child joins a key path and a key.
func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// where names a mapping in messages.
func where(path string) string {
	if path == "" {
		return "at top level"
	}
	return "in " + path
}

// mapping checks that n is a mapping whose keys are plain, unique and known,
// and returns its values. ok is false when n is not a mapping (reported) or
// is null (absent).
func (w *walker) mapping(n *yaml.Node, path string, known ...string) (fields, bool) {
	f := fields{path: path, vals: map[string]*yaml.Node{}, written: map[string]bool{}}
	if n == nil || isNull(n) {
		return f, false
	}
	f.line = n.Line
	if n.Kind != yaml.MappingNode {
		w.wrongKind(n, path, "a mapping (key: value lines)")
		return f, false
	}
	keyLines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge":
			w.add(k.Line, "", "%s: keys must be plain names; anchors, aliases and merge keys (<<) are not supported", keyDesc(path))
			continue
		case k.ShortTag() != "!!str":
			w.add(k.Line, "", "key %s %s is not a name (known: %s)", describe(k), where(path), strings.Join(known, ", "))
			continue
		}
		if first, dup := keyLines[k.Value]; dup {
			w.add(k.Line, "", "duplicate key %q %s (first at line %d)", k.Value, where(path), first)
			continue
		}
		keyLines[k.Value] = k.Line
		if !contains(known, k.Value) {
			w.add(k.Line, "", "unknown key %q %s (known: %s)", k.Value, where(path), strings.Join(known, ", "))
			continue
		}
		f.written[k.Value] = true
		if v.Kind == yaml.AliasNode {
			w.add(v.Line, child(path, k.Value), "aliases (*%s) are not supported; write the value out", v.Value)
			continue
		}
		f.vals[k.Value] = v
	}
	return f, true
}

func keyDesc(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

// get returns the value of key, or nil when it is absent or null.
func (f fields) get(key string) *yaml.Node {
	n := f.vals[key]
	if n == nil || isNull(n) {
		return nil
	}
	return n
}

// key returns the key path of one of f's keys.
func (f fields) key(key string) string { return child(f.path, key) }

// require returns the value of key, reporting it missing when absent, null
// or "" (but not again when its value was already refused).
func (w *walker) require(f fields, key, hint string) *yaml.Node {
	if n := f.get(key); n != nil {
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Value == "" {
			w.add(n.Line, f.key(key), "empty; this key is required (%s)", hint)
			return nil
		}
		return n
	}
	if f.written[key] && f.vals[key] == nil {
		return nil
	}
	line := f.line
	if n := f.vals[key]; n != nil {
		line = n.Line
	}
	if f.path == "" {
		w.add(line, "", "missing required key %q (%s)", key, hint)
	} else {
		w.add(line, f.path, "missing required key %q (%s)", key, hint)
	}
	return nil
}

// list returns the items of a sequence; nil and false when n is absent or
// not a sequence (reported).
func (w *walker) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	if n == nil || isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		w.wrongKind(n, path, "a list")
		return nil, false
	}
	for _, item := range n.Content {
		if item.Kind == yaml.AliasNode {
			w.add(item.Line, path, "aliases (*%s) are not supported; write the value out", item.Value)
			return nil, false
		}
	}
	return n.Content, true
}

// str returns a string scalar's value. ok is false (and a problem recorded)
// for any other kind or tag; null is "", true.
func (w *walker) str(n *yaml.Node, path string) (string, bool) {
	if n == nil || isNull(n) {
		return "", true
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return n.Value, true
	}
	if n.Kind == yaml.ScalarNode && isPlainScalar(n) {
		w.add(n.Line, path, "expected a string, got %s; quote it: %q", describe(n), n.Value)
		return "", false
	}
	w.wrongKind(n, path, "a string")
	return "", false
}

func (w *walker) wrongKind(n *yaml.Node, path, want string) {
	w.add(n.Line, path, "expected %s, got %s", want, describe(n))
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isPlainScalar(n *yaml.Node) bool {
	switch n.ShortTag() {
	case "!!int", "!!float", "!!bool", "!!timestamp":
		return true
	}
	return false
}

// describe names a node's kind (and short value) for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		switch n.ShortTag() {
		case "!!int":
			return "integer " + v
		case "!!float":
			return "number " + v
		case "!!bool":
			return "boolean " + v
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %q", v)
		case "!!timestamp":
			return "timestamp " + v
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), v)
		}
	}
	return "an unknown YAML node"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
