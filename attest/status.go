package attest

import (
	"bytes"
	"errors"
	"fmt"
)

// statusInfo is what procmesh uses from /proc/PID/status (proc(5)).
type statusInfo struct {
	UID    [4]uint32 // real, effective, saved set, filesystem
	GID    [4]uint32 // real, effective, saved set, filesystem
	Groups []uint32  // supplementary groups, in kernel order
	// TracerPID is the PID of the process tracing this one (ptrace), as
	// procmesh's PID namespace sees it; 0 when it is not traced.
	TracerPID int32
}

// maxGroups is the kernel's NGROUPS_MAX; a longer Groups line is refused.
const maxGroups = 65536

var errStatusFormat = errors.New("malformed status")

// parseStatus parses the Uid, Gid, Groups and TracerPid lines of
// /proc/PID/status. All four must be present exactly once (a status without
// TracerPid cannot say the process is untraced); other lines are ignored. It
// never panics.
func parseStatus(b []byte) (statusInfo, error) {
	var si statusInfo
	var seenUID, seenGID, seenGroups, seenTracer bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var err error
		switch string(key) {
		case "Uid":
			if seenUID {
				return si, fmt.Errorf("%w: two Uid lines", errStatusFormat)
			}
			seenUID = true
			err = parseIDQuad(value, &si.UID)
		case "Gid":
			if seenGID {
				return si, fmt.Errorf("%w: two Gid lines", errStatusFormat)
			}
			seenGID = true
			err = parseIDQuad(value, &si.GID)
		case "Groups":
			if seenGroups {
				return si, fmt.Errorf("%w: two Groups lines", errStatusFormat)
			}
			seenGroups = true
			si.Groups, err = parseIDList(value)
		case "TracerPid":
			if seenTracer {
				return si, fmt.Errorf("%w: two TracerPid lines", errStatusFormat)
			}
			seenTracer = true
			err = parseTracer(value, &si.TracerPID)
		}
		if err != nil {
			return si, fmt.Errorf("%w: %s: %w", errStatusFormat, string(key), err)
		}
	}
	switch {
	case !seenUID:
		return si, fmt.Errorf("%w: no Uid line", errStatusFormat)
	case !seenGID:
		return si, fmt.Errorf("%w: no Gid line", errStatusFormat)
	case !seenGroups:
		return si, fmt.Errorf("%w: no Groups line", errStatusFormat)
	case !seenTracer:
		return si, fmt.Errorf("%w: no TracerPid line", errStatusFormat)
	}
	return si, nil
}

// parseIDQuad parses exactly four whitespace-separated ids.
func parseIDQuad(b []byte, out *[4]uint32) error {
	n := 0
	for f, rest := nextField(b); len(f) > 0; f, rest = nextField(rest) {
		if n == len(out) {
			return errors.New("more than 4 ids")
		}
		id, ok := parseUint(f, 32)
		if !ok {
			return fmt.Errorf("bad id %q", string(f))
		}
		out[n] = uint32(id)
		n++
	}
	if n != len(out) {
		return fmt.Errorf("%d ids, want 4", n)
	}
	return nil
}

// parseTracer parses the one PID of a TracerPid line.
func parseTracer(b []byte, out *int32) error {
	f, rest := nextField(b)
	if len(f) == 0 {
		return errors.New("no PID")
	}
	if g, _ := nextField(rest); len(g) > 0 {
		return errors.New("more than one PID")
	}
	pid, ok := parseUint(f, 31)
	if !ok {
		return fmt.Errorf("bad PID %q", string(f))
	}
	*out = int32(pid)
	return nil
}

// parseIDList parses any number (up to maxGroups) of whitespace-separated
// ids; nil when there are none.
func parseIDList(b []byte) ([]uint32, error) {
	var ids []uint32
	for f, rest := nextField(b); len(f) > 0; f, rest = nextField(rest) {
		if len(ids) == maxGroups {
			return nil, fmt.Errorf("more than %d ids", maxGroups)
		}
		id, ok := parseUint(f, 32)
		if !ok {
			return nil, fmt.Errorf("bad id %q", string(f))
		}
		ids = append(ids, uint32(id))
	}
	return ids, nil
}

// nextField returns the first run of bytes between tabs and spaces in b and
// what follows it; field is empty when b holds no more.
func nextField(b []byte) (field, rest []byte) {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	end := bytes.IndexAny(b, " \t")
	if end < 0 {
		end = len(b)
	}
	return b[:end], b[end:]
}
