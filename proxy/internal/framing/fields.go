package framing

import (
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// ParseFields parses the field lines of a message head the way
// net/textproto's ReadMIMEHeader does, but only in a strict form, and
// without its line reader: s is what follows the start line, field lines
// each ending in CRLF and then the empty line ("\r\n"), and the result
// is the same map ReadMIMEHeader would return (canonical names, values
// with the surrounding blanks removed, in order). The values are
// substrings of s, so a head costs one string and the map.
//
// ok is false for anything outside the strict form: a bare LF or CR, a
// line that folds (obs-fold), a name that is not a token or has blanks
// before the colon, a value with a control byte or a byte above 0x7E,
// or more than maxFields lines. The caller then lets net/http read the
// head, with whatever it makes of it: the strict form is a subset on
// which both give the same answer (FuzzParseFields holds them to that).
func ParseFields(s string, maxFields int) (h http.Header, ok bool) {
	n := strings.Count(s, "\n") - 1
	if n < 0 || n > maxFields || !strings.HasSuffix(s, "\r\n") {
		return nil, false
	}
	h = make(http.Header, n)
	strs := make([]string, n) // one backing array for single values, as textproto does
	for {
		i := strings.IndexByte(s, '\n')
		if i < 1 || s[i-1] != '\r' {
			return nil, false
		}
		line := s[:i-1]
		s = s[i+1:]
		if line == "" {
			return h, s == ""
		}
		colon := strings.IndexByte(line, ':')
		if colon < 1 {
			return nil, false
		}
		key, ok := canonicalName(line[:colon])
		if !ok {
			return nil, false
		}
		v := line[colon+1:]
		if !plainText(v) {
			return nil, false
		}
		v = strings.Trim(v, " \t")
		vv := h[key]
		if vv == nil && len(strs) > 0 {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = v
			h[key] = vv
		} else {
			h[key] = append(vv, v)
		}
	}
}

// canonicalName returns the canonical form of a field name
// (textproto.CanonicalMIMEHeaderKey), without an allocation when name is
// already canonical; ok is false when name is not a token.
func canonicalName(name string) (string, bool) {
	canonical := true
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isTokenByte(c) {
			return "", false
		}
		switch {
		case upper && 'a' <= c && c <= 'z', !upper && 'A' <= c && c <= 'Z':
			canonical = false
		}
		upper = c == '-'
	}
	if canonical {
		return name, true
	}
	return textproto.CanonicalMIMEHeaderKey(name), true
}

// plainText reports text of visible ASCII, spaces and tabs only: the
// field values and reason phrases the strict form takes (no control
// bytes, no obs-text).
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c > '~' {
			return false
		}
	}
	return true
}

// isTokenByte reports the bytes of an RFC 9110 token.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c < 0x80 && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ParseResponse parses head, a complete response head ending in CRLF
// CRLF, to req, whose body (if any) follows in br, as http.ReadResponse
// would, but only in a strict form and for responses framed by a
// Content-Length: status 200-599 but 204 and 304, to a request other
// than HEAD, one Content-Length of digits, no Transfer-Encoding, Trailer
// or Pragma, fields as ParseFields takes them. ok is false otherwise;
// the caller then reads the head with http.ReadResponse
// (FuzzParseResponse holds the two to the same answer).
func ParseResponse(head []byte, br io.Reader, req *http.Request) (res *http.Response, ok bool) {
	if req.Method == http.MethodHead {
		return nil, false
	}
	s := string(head)
	line, rest, _ := strings.Cut(s, "\r\n")
	status, found := strings.CutPrefix(line, "HTTP/1.1 ")
	if !found || len(status) < 3 || len(status) > 3 && status[3] != ' ' {
		return nil, false
	}
	code := 0
	for i := range 3 {
		c := status[i]
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, false
	}
	if !plainText(status[3:]) {
		return nil, false
	}
	h, ok := ParseFields(rest, maxResponseFields)
	if !ok {
		return nil, false
	}
	n, present, ok := LengthFraming(h)
	if !ok || !present { // none: a body to the end of the connection
		return nil, false
	}
	closing := httpguts.HeaderValuesContainsToken(h["Connection"], "close")
	if closing {
		delete(h, "Connection") // as ReadResponse does
	}
	return &http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: FixedBody(br, n), ContentLength: n, Close: closing, Request: req}, true
}

// LengthFraming reads the framing of strict-form fields: the body length
// (present: a Content-Length was given; without one a request has none),
// and ok false for what the strict form leaves to net/http because it
// frames or rewrites the message its own way: Transfer-Encoding (chunked),
// Trailer (fixTrailer), Pragma (fixPragmaCacheControl), and a
// Content-Length given more than once or not a decimal number.
func LengthFraming(h http.Header) (n int64, present, ok bool) {
	if h["Pragma"] != nil || h["Trailer"] != nil || h["Transfer-Encoding"] != nil {
		return 0, false, false
	}
	cl := h["Content-Length"]
	switch len(cl) {
	case 0:
		return 0, false, true
	case 1:
		v, err := strconv.ParseUint(cl[0], 10, 63)
		return int64(v), true, err == nil
	}
	return 0, true, false
}

// FixedBody is a body of n bytes that follow in br: http.NoBody for none.
func FixedBody(br io.Reader, n int64) io.ReadCloser {
	if n == 0 {
		return http.NoBody
	}
	return &LengthBody{R: br, Left: n}
}

// maxResponseFields bounds the fields ParseResponse takes (textproto's
// own preallocation bound); the caller applies its own, lower limit.
const maxResponseFields = 1000

// LengthBody is a message body of a known length read from a
// connection's reader: like net/http's, it ends in io.ErrUnexpectedEOF
// when the connection ends first.
type LengthBody struct {
	R    io.Reader
	Left int64
}

func (b *LengthBody) Read(p []byte) (int, error) {
	if b.Left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.Left {
		p = p[:b.Left]
	}
	n, err := b.R.Read(p)
	b.Left -= int64(n)
	if err == io.EOF && b.Left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close does nothing: the reader belongs to the connection.
func (b *LengthBody) Close() error { return nil }
