package proxy

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/procmesh/procmesh/proxy/internal/framing"
)

// The fast path parses the request heads it can serve itself, instead of
// http.ReadRequest with its line reader: one string of the head, the
// fields as substrings of it, and the checks of net/http's server
// (serverChecks) in the same pass. It accepts only a strict form of
// HTTP/1.1, on which it gives what ReadRequest and serverChecks give
// (FuzzParseFastRequest); any other head is read by ReadRequest as
// before, and what that makes of it decides (a handoff, a 400).

// parseFastRequest parses head, a complete request head ending in
// CRLF CRLF, read from br, whose body (if any) follows in br. ok is false
// when the head is outside the strict form; nothing is read from br then.
func parseFastRequest(head []byte, br *bufio.Reader, maxFields int) (r *http.Request, ok bool) {
	s := string(head)
	line, rest, _ := strings.Cut(s, "\r\n")
	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" || method == "" || method == http.MethodConnect ||
		!validTarget(target) || strings.IndexFunc(method, notToken) >= 0 {
		return nil, false
	}
	h, ok := framing.ParseFields(rest, maxFields)
	if !ok {
		return nil, false
	}
	host := h["Host"]
	if len(host) != 1 || !httpguts.ValidHostHeader(host[0]) {
		return nil, false
	}
	length, _, ok := framing.LengthFraming(h)
	if !ok {
		return nil, false
	}
	delete(h, "Host") // ReadRequest moves it to r.Host
	u, err := url.ParseRequestURI(target)
	if err != nil || u.Host != "" {
		return nil, false
	}
	return &http.Request{
		Method: method, URL: u, Proto: proto, ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Host: host[0], RequestURI: target, ContentLength: length,
		Close: httpguts.HeaderValuesContainsToken(h["Connection"], "close"),
		Body:  framing.FixedBody(br, length),
	}, true
}

// validTarget reports an origin-form target (RFC 9112 3.2.1) of visible
// ASCII; url.ParseRequestURI judges the rest.
func validTarget(t string) bool {
	if t == "" || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func notToken(r rune) bool { return r >= 0x80 || !httpguts.IsTokenRune(r) }
