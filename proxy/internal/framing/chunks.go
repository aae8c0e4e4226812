package framing

import (
	"bytes"
	"errors"
	"fmt"
)

// The chunked body, checked as net/http's chunked reader checks it
// (net/http/internal/chunked.go), trailers more strictly.

// chunkLine checks a chunk-size line as net/http's chunked reader does.
func (s *Scanner) chunkLine() error {
	p := s.line
	if i := bytes.IndexByte(p, '\r'); i < 0 {
		return fmt.Errorf("%w: chunk-size line ends with a bare LF", ErrFraming)
	} else if i != len(p)-2 {
		return fmt.Errorf("%w: CR inside a chunk-size line", ErrFraming)
	}
	p = p[:len(p)-2]
	if len(p) >= maxChunkLine {
		return fmt.Errorf("%w: line longer than %d bytes", ErrFraming, maxChunkLine)
	}
	p = bytes.TrimRight(p, " \t")
	p, _, _ = bytes.Cut(p, []byte(";"))
	n, err := parseHexSize(p)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFraming, err)
	}
	if n == 0 {
		s.state, s.trail = scanTrailer, 0
		return nil
	}
	s.state, s.remain = scanChunkData, n
	return nil
}

// trailerLine checks a trailer line: CRLF-terminated, not folded, the
// whole section within 4 KiB (net/http's limit). The blank line ends the
// body.
func (s *Scanner) trailerLine() error {
	p := s.line
	if s.trail += len(p); s.trail > maxChunkLine {
		return fmt.Errorf("%w: trailer section longer than %d bytes", ErrFraming, maxChunkLine)
	}
	if len(p) < 2 || p[len(p)-2] != '\r' || bytes.IndexByte(p[:len(p)-2], '\r') >= 0 {
		return fmt.Errorf("%w: trailer line not ended by CRLF", ErrFraming)
	}
	if len(p) == 2 {
		s.state = scanHead
		return nil
	}
	if p[0] == ' ' || p[0] == '\t' {
		return fmt.Errorf("%w: folded trailer line", ErrFraming)
	}
	return nil
}

// parseHexSize is net/http's chunk-size parser: 1 to 16 hex digits.
func parseHexSize(v []byte) (uint64, error) {
	if len(v) == 0 {
		return 0, errors.New("empty chunk size")
	}
	if len(v) > 16 {
		return 0, errors.New("chunk size too large")
	}
	var n uint64
	for _, b := range v {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			b = b - 'A' + 10
		default:
			return 0, fmt.Errorf("invalid byte %q in chunk size", b)
		}
		n = n<<4 | uint64(b)
	}
	return n, nil
}
