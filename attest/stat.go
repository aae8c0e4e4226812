package attest

import (
	"bytes"
	"errors"
	"fmt"
)

// statInfo is what procmesh uses from /proc/PID/stat (proc(5)).
type statInfo struct {
	PID       int32
	State     byte   // field 3: R, S, D, Z, X, ...
	StartTime uint64 // field 22: clock ticks after boot
}

// statStartField is the 1-based number of the start time field in
// /proc/PID/stat.
const statStartField = 22

var errStatFormat = errors.New("malformed stat")

// parseStat parses the content of /proc/PID/stat. The command name (field 2)
// sits between the first '(' and the LAST ')' and may hold spaces, ')' and
// newlines, so every later field is counted after the last ')'. It never
// panics and never allocates on success.
func parseStat(b []byte) (statInfo, error) {
	var si statInfo
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 2 || b[open-1] != ' ' || closing < open {
		return si, fmt.Errorf("%w: no (comm) field", errStatFormat)
	}
	pid, ok := parseUint(b[:open-1], 31)
	if !ok || pid == 0 {
		return si, fmt.Errorf("%w: bad pid field", errStatFormat)
	}
	si.PID = int32(pid)

	rest := bytes.TrimSuffix(b[closing+1:], []byte{'\n'})
	for field := 3; field <= statStartField; field++ {
		if len(rest) == 0 || rest[0] != ' ' {
			return si, fmt.Errorf("%w: truncated before field %d", errStatFormat, field)
		}
		rest = rest[1:]
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		value := rest[:end]
		rest = rest[end:]
		if len(value) == 0 {
			return si, fmt.Errorf("%w: empty field %d", errStatFormat, field)
		}
		switch field {
		case 3:
			if len(value) != 1 || !isLetter(value[0]) {
				return si, fmt.Errorf("%w: bad state field", errStatFormat)
			}
			si.State = value[0]
		case statStartField:
			start, ok := parseUint(value, 64)
			if !ok {
				return si, fmt.Errorf("%w: bad start time field", errStatFormat)
			}
			si.StartTime = start
		}
	}
	return si, nil
}

// isLetter reports whether c is an ASCII letter.
func isLetter(c byte) bool {
	return ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
}

// parseUint parses a plain decimal number (digits only, no sign, no
// spaces) that fits in bits bits.
func parseUint(b []byte, bits uint) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var max uint64 = 1<<bits - 1
	if bits == 64 {
		max = ^uint64(0)
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
