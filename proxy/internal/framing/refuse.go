package framing

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

func (s *Scanner) refuseBad(out []byte, reason string) []byte {
	return s.Refuse(out, http.StatusBadRequest, reason)
}

// Refuse replaces the head being read by a stand-in request, answered
// status with reason, and stops the scan. The stand-in's target is random,
// so a client cannot forge one.
func (s *Scanner) Refuse(out []byte, status int, reason string) []byte {
	r := &Refusal{Status: status, Reason: reason}
	reqLine, _, _ := bytes.Cut(s.head, []byte("\n"))
	method, target, _, _ := parseRequestLine(string(bytes.TrimSuffix(reqLine, []byte("\r"))))
	r.Method, r.Target = clip(method, 32), clip(target, 256)
	var nonce [16]byte
	rand.Read(nonce[:])
	r.Marker = "/.procmesh-refused/" + hex.EncodeToString(nonce[:])
	s.refused = r
	s.state = scanRefused
	s.head, s.line = nil, nil
	s.release([]byte("GET " + r.Marker + " HTTP/1.1"))
	return append(out, "GET "+r.Marker+" HTTP/1.1\r\nHost: procmesh\r\nConnection: close\r\n\r\n"...)
}

func (s *Scanner) release(requestLine []byte) {
	if s.Released != nil {
		s.Released(string(requestLine))
	}
}

// parseRequestLine splits a request line as net/http does.
func parseRequestLine(line string) (method, target, proto string, ok bool) {
	method, rest, ok1 := cutByte(line, ' ')
	target, proto, ok2 := cutByte(rest, ' ')
	return method, target, proto, ok1 && ok2
}

func cutByte(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// EqualFoldLower reports whether b is lower, ASCII letters of b matched
// without regard to case (header names as the wire carries them).
func EqualFoldLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
