package framing

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Scanner follows the HTTP/1.1 framing of what a client sends on the main
// socket, one step ahead of net/http, and holds each request head back
// until it has judged it.
//
// net/http accepts a few requests that THREATS P1 says to refuse: both
// Content-Length and Transfer-Encoding (it drops the Content-Length),
// Transfer-Encoding in HTTP/1.0 (it ignores it and frames by
// Content-Length), and obs-fold header lines (it joins them); and it only
// bounds header bytes, not header fields, with an error that does not say
// which limit was hit (P8). Such a head is never shown to net/http: the
// scanner releases a stand-in request in its place and records why, the
// handler answers that stand-in with the reason, and nothing the client
// sent after the head is read. Transfer-Encoding other than a single
// "chunked" is refused the same way (net/http answers 501).
//
// For the heads it passes, the scanner frames bodies exactly as net/http
// does (it follows transfer.go and internal/chunked.go), so that it finds
// the next head where net/http will; where it cannot agree with net/http
// (a malformed chunk), it fails the read, and the request fails with 400.
// After a head that ends HTTP/1.1 framing (CONNECT, an Upgrade, another
// protocol version) it lets everything through: the handler makes such a
// connection a tunnel or closes it after the response. After the HTTP/2
// preface, an h2Check follows the frames.
type Scanner struct {
	maxHead, maxFields int
	over               OverLimit

	state    scanState
	head     []byte // the head being read, held back
	scanned  int    // bytes of head already searched for a line end
	fields   int
	lastPOST bool // net/http skips up to 4 CR/LF after a POST
	skipped  int

	remain uint64 // fixed-length body or chunk-data bytes left
	line   []byte // chunk-size or trailer line being read, held back
	trail  int    // trailer bytes so far

	// refused is the verdict on the head replaced by a stand-in.
	refused *Refusal
	// h2 follows the frames after an HTTP/2 preface.
	h2 *h2Check
	// spoke: a request line with an HTTP version was read.
	spoke bool
	// Released, when set, is told the request line of every head
	// released, stand-ins included.
	Released func(requestLine string)
}

type scanState uint8

const (
	scanHead      scanState = iota // reading a request head
	scanBody                       // remain bytes of a Content-Length body
	scanChunkLine                  // reading a chunk-size line
	scanChunkData                  // remain bytes of chunk data
	scanChunkEnd                   // the CRLF after chunk data
	scanTrailer                    // trailer lines after the last chunk
	scanPass                       // not HTTP/1.1 framing any more
	scanH2                         // HTTP/2 after its preface: h2Check follows it
	scanRefused                    // a head was refused: nothing more
)

// Refusal is why a head was replaced, and what the stand-in is.
type Refusal struct {
	Status int
	Reason string // for the client and the audit line
	Method string // of the refused head, for the audit line
	Target string
	Marker string // request target of the stand-in
}

// OverLimit says why a head over the scanner's limits is refused (431):
// the caller's words, naming its configuration keys.
type OverLimit struct {
	HeadBytes string // the head is over maxHead bytes
	Fields    string // the head has more than maxFields fields
}

// Line length bound of chunk-size and trailer lines, as net/http's.
const maxChunkLine = 4096

// ErrFraming wraps what was wrong with a chunked body.
var ErrFraming = errors.New("malformed chunked request body")

// NewScanner returns a Scanner for one connection: heads of at most
// maxHead bytes and maxFields fields, refused with over's words beyond.
func NewScanner(maxHead, maxFields int, over OverLimit) *Scanner {
	return &Scanner{maxHead: maxHead, maxFields: maxFields, over: over}
}

// Refused is the verdict on the head replaced by a stand-in, nil while
// none was: the scanner then follows nothing more.
func (s *Scanner) Refused() *Refusal { return s.refused }

// Done reports that the scanner no longer follows the stream.
func (s *Scanner) Done() bool { return s.state == scanPass || s.state == scanRefused }

// MidHead reports that part of a head has arrived and not all of it.
func (s *Scanner) MidHead() bool { return s.state == scanHead && len(s.head) > 0 }

// Idle reports that the scanner holds nothing back between requests.
func (s *Scanner) Idle() bool { return s.state == scanHead && len(s.head) == 0 }

// Pass stops scanning: the connection was taken over.
func (s *Scanner) Pass() {
	if s.state != scanRefused {
		s.state = scanPass
	}
}

// Feed scans in and appends to out what net/http may read now. A non-nil
// error means the body framing is broken; out is then complete and
// nothing more may be read.
func (s *Scanner) Feed(in, out []byte) ([]byte, error) {
	for len(in) > 0 {
		switch s.state {
		case scanPass:
			return append(out, in...), nil
		case scanRefused:
			return out, nil
		case scanH2:
			return s.h2.Feed(in, out)
		case scanHead:
			if len(s.head) == 0 && s.lastPOST && s.skipped < 4 && (in[0] == '\r' || in[0] == '\n') {
				s.skipped++ // net/http discards these itself
				out = append(out, in[0])
				in = in[1:]
				continue
			}
			s.skipped = 4
			i := bytes.IndexByte(in, '\n')
			take := len(in)
			if i >= 0 {
				take = i + 1
			}
			if len(s.head)+take > s.maxHead {
				take = s.maxHead + 1 - len(s.head)
			}
			s.head = append(s.head, in[:take]...)
			in = in[take:]
			if len(s.head) > s.maxHead {
				return s.Refuse(out, http.StatusRequestHeaderFieldsTooLarge, s.over.HeadBytes), nil
			}
			var err error
			out, err = s.lines(out)
			if err != nil {
				return out, err
			}
			if s.state == scanH2 {
				return s.h2.Feed(in, out) // judges the preface line even with nothing more
			}
		case scanBody, scanChunkData:
			n := min(uint64(len(in)), s.remain)
			out = append(out, in[:n]...)
			in = in[n:]
			if s.remain -= n; s.remain == 0 && s.state == scanBody {
				s.state = scanHead // the request ends with its body
			} else if s.remain == 0 {
				s.state = scanChunkEnd // chunk data ends with a CRLF
			}
		case scanChunkEnd:
			s.line = append(s.line, in[0])
			in = in[1:]
			if len(s.line) < 2 {
				continue
			}
			if string(s.line) != "\r\n" {
				return out, fmt.Errorf("%w: chunk data not followed by CRLF", ErrFraming)
			}
			out = append(out, s.line...)
			s.line = s.line[:0]
			s.state = scanChunkLine
		case scanChunkLine, scanTrailer:
			i := bytes.IndexByte(in, '\n')
			take := len(in)
			if i >= 0 {
				take = i + 1
			}
			s.line = append(s.line, in[:take]...)
			in = in[take:]
			if i < 0 {
				if len(s.line) >= maxChunkLine {
					return out, fmt.Errorf("%w: line longer than %d bytes", ErrFraming, maxChunkLine)
				}
				continue
			}
			var err error
			if s.state == scanChunkLine {
				err = s.chunkLine()
			} else {
				err = s.trailerLine()
			}
			if err != nil {
				return out, err
			}
			out = append(out, s.line...)
			s.line = s.line[:0]
		}
	}
	return out, nil
}

// lines judges the complete lines of the head read so far, and releases
// the head once its blank line arrived.
func (s *Scanner) lines(out []byte) ([]byte, error) {
	for {
		i := bytes.IndexByte(s.head[s.scanned:], '\n')
		if i < 0 {
			return out, nil
		}
		start := s.scanned
		s.scanned += i + 1
		line := s.head[start : s.scanned-1]
		line = bytes.TrimSuffix(line, []byte("\r")) // as bufio.Reader.ReadLine
		if start == 0 {
			continue // the request line is judged with the head
		}
		if len(line) == 0 {
			return s.endHead(out), nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return s.refuseBad(out, "obsolete line folding in the header section (a header line starts with white space)"), nil
		}
		if bytes.IndexByte(line, ':') < 0 {
			return s.refuseBad(out, "malformed header line (no colon)"), nil
		}
		if s.fields++; s.fields > s.maxFields {
			return s.Refuse(out, http.StatusRequestHeaderFieldsTooLarge, s.over.Fields), nil
		}
	}
}

// endHead judges a complete head and releases it, or its stand-in.
func (s *Scanner) endHead(out []byte) []byte {
	head := s.head
	s.head, s.scanned, s.fields, s.skipped = nil, 0, 0, 0
	if cap(head) <= 4<<10 {
		s.head = head[:0] // reused once head is copied out, below
	}
	reqLine, rest, _ := bytes.Cut(head, []byte("\n"))
	reqLine = bytes.TrimSuffix(reqLine, []byte("\r"))
	method, _, proto, ok := parseRequestLine(string(reqLine))
	if !ok && !s.spoke {
		return s.notHTTP(head, out)
	}
	if !ok {
		s.head = head
		return s.refuseBad(out, "malformed request line")
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok && !s.spoke {
		return s.notHTTP(head, out)
	}
	if !ok {
		s.head = head
		return s.refuseBad(out, "malformed HTTP version")
	}
	s.spoke = true
	if isH2Preface(reqLine) {
		// The HTTP/2 preface: h2Check holds it until it is complete.
		s.state, s.h2 = scanH2, newH2Check(head, 2*s.maxHead+H2MaxFrameSize)
		s.release(reqLine)
		return out
	}
	if major != 1 {
		// A version net/http refuses itself.
		s.state = scanPass
		s.release(reqLine)
		return append(out, head...)
	}
	var cl, te [][]byte
	upgrade := false
	for len(rest) > 0 {
		line, next, _ := bytes.Cut(rest, []byte("\n"))
		rest = next
		name, value, found := bytes.Cut(bytes.TrimSuffix(line, []byte("\r")), []byte(":"))
		if !found {
			continue // net/http refuses the line itself
		}
		value = bytes.Trim(value, " \t") // as textproto; a CR left in is refused below or by net/http
		switch {
		case EqualFoldLower(name, "content-length"):
			cl = append(cl, value)
		case EqualFoldLower(name, "transfer-encoding"):
			te = append(te, value)
		case EqualFoldLower(name, "upgrade"):
			upgrade = true
		}
	}
	s.lastPOST = method == "POST"
	bad := func(reason string) []byte {
		s.head = head
		return s.refuseBad(out, reason)
	}
	var length uint64
	chunked := false
	switch {
	case len(te) > 0 && minor == 0:
		return bad("Transfer-Encoding in an HTTP/1.0 request")
	case len(te) > 0 && len(cl) > 0:
		return bad("both Content-Length and Transfer-Encoding")
	case len(te) > 1 || len(te) == 1 && !EqualFoldLower(te[0], "chunked"):
		return bad(fmt.Sprintf("Transfer-Encoding %q: only a single \"chunked\" is accepted", bytes.Join(te, []byte(", "))))
	case len(te) == 1:
		chunked = true
	case len(cl) > 0:
		for _, v := range cl[1:] {
			if !bytes.Equal(v, cl[0]) {
				return bad("conflicting Content-Length values")
			}
		}
		n, err := strconv.ParseUint(string(cl[0]), 10, 63)
		if err != nil || len(cl[0]) == 0 {
			return bad(fmt.Sprintf("invalid Content-Length %q", cl[0]))
		}
		length = n
	}
	out = append(out, head...)
	s.release(reqLine)
	switch {
	case method == http.MethodConnect || upgrade:
		s.state = scanPass
	case chunked:
		s.state = scanChunkLine
	case length > 0:
		s.state, s.remain = scanBody, length
	}
	return out
}
