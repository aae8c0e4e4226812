package registry

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Selector types. A selector is the string "<type>:<value>", for example
// "unix:uid:1000" or "systemd:id:billing.service".
const (
	TypeUID              = "unix:uid"
	TypeUser             = "unix:user"
	TypeGID              = "unix:gid"
	TypeGroup            = "unix:group"
	TypeSupplementaryGID = "unix:supplementary_gid"
	TypePath             = "unix:path"
	TypeSHA256           = "unix:sha256"
	TypeContainerID      = "container:id"
	TypePodUID           = "k8s:pod-uid"
	TypeSystemdID        = "systemd:id"
)

// maxSelectorValueBytes bounds a selector's value (PATH_MAX is 4096).
const maxSelectorValueBytes = 4096

// SelectorTypes returns the known selector types.
func SelectorTypes() []string {
	return []string{
		TypeUID, TypeUser, TypeGID, TypeGroup, TypeSupplementaryGID,
		TypePath, TypeSHA256, TypeContainerID, TypePodUID, TypeSystemdID,
	}
}

// singleValued reports whether a process has at most one value of typ.
// Only unix:supplementary_gid is multi-valued; two entries using a
// single-valued type with different values can never match the same process.
func singleValued(typ string) bool { return typ != TypeSupplementaryGID }

// SelectorError explains why a selector string is malformed.
type SelectorError struct {
	Selector string
	Reason   string // what is wrong and how to write it instead
}

func (e *SelectorError) Error() string {
	return fmt.Sprintf("registry: selector %q: %s", e.Selector, e.Reason)
}

// ParseSelector splits s into its type (e.g. "unix:uid") and value and checks
// the value is written the way attestation reports it, so that a selector in
// the config can match: uids and gids in canonical decimal, paths absolute and
// clean, sha256 as 64 lowercase hex digits, pod UIDs as lowercase UUIDs,
// systemd units with their suffix. A malformed selector returns a
// *SelectorError.
func ParseSelector(s string) (typ, value string, err error) {
	fail := func(format string, args ...any) (string, string, error) {
		return "", "", &SelectorError{Selector: s, Reason: fmt.Sprintf(format, args...)}
	}
	i := strings.IndexByte(s, ':')
	j := -1
	if i >= 0 {
		j = strings.IndexByte(s[i+1:], ':')
	}
	if j < 0 {
		return fail("not <type>:<value>; write it like unix:uid:1000")
	}
	typ, value = s[:i+1+j], s[i+2+j:]
	if !knownType(typ) {
		return fail("unknown selector type %q (known: %s)", typ, strings.Join(SelectorTypes(), ", "))
	}
	if value == "" {
		return fail("empty value; write it like %s", example(typ))
	}
	if len(value) > maxSelectorValueBytes {
		return fail("value is %d bytes; at most %d are allowed", len(value), maxSelectorValueBytes)
	}
	for k := 0; k < len(value); k++ {
		if c := value[k]; c < 0x20 || c == 0x7f {
			return fail("value contains control character %q", c)
		}
	}
	if reason := checkValue(typ, value); reason != "" {
		return fail("%s", reason)
	}
	return typ, value, nil
}

func knownType(typ string) bool {
	switch typ {
	case TypeUID, TypeUser, TypeGID, TypeGroup, TypeSupplementaryGID,
		TypePath, TypeSHA256, TypeContainerID, TypePodUID, TypeSystemdID:
		return true
	}
	return false
}

// checkValue returns "" when value is well-formed for typ, else the reason.
func checkValue(typ, value string) string {
	switch typ {
	case TypeUID, TypeGID, TypeSupplementaryGID:
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != value {
			name := strings.TrimPrefix(typ, "unix:")
			hint := ""
			switch typ {
			case TypeUID:
				hint = "; use unix:user:" + value + " for a user name"
			case TypeGID:
				hint = "; use unix:group:" + value + " for a group name"
			}
			return fmt.Sprintf("%s must be a decimal number without leading zeros, like %s%s", name, example(typ), hint)
		}
	case TypeUser, TypeGroup:
		if strings.ContainsAny(value, ": /\t") {
			return "names cannot contain ':', '/' or spaces"
		}
	case TypePath:
		if !strings.HasPrefix(value, "/") {
			return "path must be absolute, like /usr/bin/billing"
		}
		if c := path.Clean(value); c != value {
			return fmt.Sprintf("path is not clean; write it as %s", c)
		}
	case TypeSHA256:
		if len(value) != 64 || !isLowerHex(value) {
			return "sha256 must be 64 lowercase hex digits (sha256sum output)"
		}
	case TypeContainerID:
		if len(value) > 128 || !isIDChars(value) {
			return "container id must be at most 128 letters, digits, '.', '_' or '-'"
		}
	case TypePodUID:
		if !isLowerUUID(value) {
			return "pod uid must be a lowercase UUID like 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
		}
	case TypeSystemdID:
		if !isUnitName(value) {
			return "systemd:id must be a unit name with its suffix, like billing.service or session-2.scope"
		}
	}
	return ""
}

func example(typ string) string {
	switch typ {
	case TypeUID:
		return "unix:uid:1000"
	case TypeGID:
		return "unix:gid:1000"
	case TypeSupplementaryGID:
		return "unix:supplementary_gid:27"
	case TypeUser:
		return "unix:user:billing"
	case TypeGroup:
		return "unix:group:billing"
	case TypePath:
		return "unix:path:/usr/bin/billing"
	case TypeSHA256:
		return "unix:sha256:<64 lowercase hex digits>"
	case TypeContainerID:
		return "container:id:<id>"
	case TypePodUID:
		return "k8s:pod-uid:<uuid>"
	default:
		return "systemd:id:billing.service"
	}
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isIDChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

func isLowerUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isLowerHex(s[i : i+1]) {
			return false
		}
	}
	return true
}

// isUnitName accepts systemd unit names (letters, digits, ":", "-", "_", ".",
// "\\", "@") ending in .service or .scope, the two suffixes attestation
// reports.
func isUnitName(s string) bool {
	if len(s) > 255 {
		return false
	}
	base, ok := strings.CutSuffix(s, ".service")
	if !ok {
		base, ok = strings.CutSuffix(s, ".scope")
	}
	if !ok || base == "" {
		return false
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte(":-_.\\@", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}
