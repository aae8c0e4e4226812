package proxy

import (
	"bytes"
	"net/http"

	"golang.org/x/net/http/httpguts"

	"github.com/procmesh/procmesh/proxy/internal/framing"
)

// Reading a request head on the fast path: which heads it serves, the
// checks net/http's server makes that http.ReadRequest does not, and the
// copy of the head that a handoff replays.

// fastEligible reports requests the fast path serves exactly.
func fastEligible(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor == 1 &&
		r.Method != http.MethodConnect &&
		len(r.TransferEncoding) == 0 &&
		r.ContentLength >= 0 && r.ContentLength <= fastMaxBody &&
		len(r.Header["Upgrade"]) == 0 && len(r.Header["Expect"]) == 0 &&
		(r.URL.IsAbs() || len(r.URL.Path) > 0 && r.URL.Path[0] == '/')
}

// serverChecks applies what net/http's server checks after it parses a
// head (net/http server.go, conn.readRequest): exactly one well-formed
// Host field, valid field names and values. http.ReadRequest alone
// accepts, for one, a field name with a space in it; and it moves Host out
// of the fields, so Host is checked on the head as received. A request
// that fails goes to net/http, which answers it 400.
func serverChecks(r *http.Request, head []byte) bool {
	host, n := hostField(head)
	if n != 1 || !httpguts.ValidHostHeader(host) {
		return false
	}
	for k, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// hostField returns the value of the head's Host field and how many Host
// fields it has.
func hostField(head []byte) (value string, n int) {
	_, rest, _ := bytes.Cut(head, []byte("\n")) // the request line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		name, v, ok := bytes.Cut(line, []byte(":"))
		if ok && framing.EqualFoldLower(name, "host") {
			n++
			value = string(bytes.Trim(v, " \t\r"))
		}
	}
	return value, n
}

// copyHead keeps a copy of the request head at the front of the reader,
// so that a handoff can replay it. fits is false when no complete head
// fits the reader's buffer, or blank lines precede it (net/http reads it
// instead); err is the read's failure before any byte of a head.
func (fc *fastConn) copyHead() (fits bool, err error) {
	br := fc.br
	if _, err := br.Peek(1); err != nil {
		return false, err
	}
	for {
		b, _ := br.Peek(br.Buffered())
		if b[0] == '\r' || b[0] == '\n' {
			return false, nil
		}
		if i := headEnd(b); i >= 0 {
			fc.head = append(fc.head[:0], b[:i]...)
			return true, nil
		}
		if br.Buffered() == br.Size() {
			return false, nil
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return false, nil // net/http reads the rest, and its error
		}
	}
}

// headEnd returns the length of the head at the start of b, or -1.
func headEnd(b []byte) int {
	crlf := bytes.Index(b, []byte("\r\n\r\n"))
	lf := bytes.Index(b, []byte("\n\n"))
	switch {
	case crlf < 0 && lf < 0:
		return -1
	case lf < 0 || crlf >= 0 && crlf+2 < lf:
		return crlf + 4
	}
	return lf + 2
}

// handBack puts what the fast path read of the connection back in front
// of what the client sends next, for net/http to read.
func (fc *fastConn) handBack() {
	cc := fc.cc
	var replay []byte
	replay = append(replay, fc.head...)
	if fc.br != nil {
		rest, _ := fc.br.Peek(fc.br.Buffered())
		replay = append(replay, rest...)
	}
	fc.head = fc.head[:0]
	fc.releaseReader()
	cc.mu.Lock()
	cc.replay = append(replay, cc.replay...)
	cc.mu.Unlock()
}
