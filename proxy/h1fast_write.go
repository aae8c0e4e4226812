package proxy

import (
	"bufio"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The fast path writes HTTP/1.1 heads itself. It drops what
// httputil.ReverseProxy drops on the net/http path, so that the upstream
// and the client see the same messages from either path: hop-by-hop
// fields and those the Connection field names (THREATS P2), client-sent
// Forwarded and X-Forwarded-* fields, the identity-claiming fields of
// Options.RequestHeadersToRemove (P9; headers_remove.go), and the framing
// fields, which it writes from the message's actual framing.

// skipResponseField reports response fields that are not passed on as
// received.
func skipResponseField(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length":
		return true
	}
	return false
}

// connectionListed returns the canonical names the Connection fields list.
func connectionListed(h http.Header) []string {
	var out []string
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				out = append(out, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	return out
}

// writeFields writes h's fields but those skip or the Connection field
// lists.
func writeFields(bw *bufio.Writer, h http.Header, skip func(string) bool) {
	listed := connectionListed(h)
	for k, vv := range h {
		// A name that is not a token is dropped, as net/http's server
		// drops it from the responses it writes.
		if skip(k) || contains(listed, k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// writeField writes one field line; a CR or LF in the value (which the
// parsers refuse) is written as a space, as net/http does.
func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// writeRequestHead writes r's head in origin form, to host, without the
// fields skip reports (Server.reqFilter).
func writeRequestHead(bw *bufio.Writer, r *http.Request, host string, skip func(string) bool) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	bw.WriteString(path)
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		bw.WriteByte('?')
		bw.WriteString(r.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	writeFields(bw, r.Header, skip)
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		writeLength(bw, r.ContentLength)
	default:
		if r.ContentLength > 0 || len(r.Header["Content-Length"]) > 0 {
			writeLength(bw, r.ContentLength)
		}
	}
	bw.WriteString("\r\n")
}

func writeLength(bw *bufio.Writer, n int64) {
	bw.WriteString("Content-Length: ")
	writeInt(bw, n, 10)
	bw.WriteString("\r\n")
}

// writeInt writes n in base into bw's free space: a number formatted in
// a local array would escape to the heap through bufio.Writer.Write, one
// allocation per call on the fast path.
func writeInt(bw *bufio.Writer, n int64, base int) {
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), n, base))
}

// Framings of a response body to the client.
type bodyFraming uint8

const (
	frameInterim bodyFraming = iota // a 1xx response: no body
	frameNone                       // HEAD, 204, 304: no body; a 304's or HEAD's Content-Length passes on
	frameLength                     // Content-Length
	frameChunked                    // chunked, with the upstream's trailers
)

// writeResponseHead writes res's head for the client of r (nil for an
// interim response).
func writeResponseHead(bw *bufio.Writer, res *http.Response, r *http.Request, f bodyFraming) {
	bw.WriteString("HTTP/1.1 ")
	writeInt(bw, int64(res.StatusCode), 10)
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(res.StatusCode))
	bw.WriteString("\r\n")
	writeFields(bw, res.Header, skipResponseField)
	switch f {
	case frameNone:
		if v := res.Header["Content-Length"]; len(v) > 0 && res.StatusCode != http.StatusNoContent {
			writeField(bw, "Content-Length", v[0])
		}
	case frameLength:
		writeLength(bw, res.ContentLength)
	case frameChunked:
		if len(res.Trailer) > 0 {
			names := make([]string, 0, len(res.Trailer))
			for k := range res.Trailer {
				names = append(names, k)
			}
			writeField(bw, "Trailer", strings.Join(names, ", "))
		}
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if r != nil && r.Close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

// writeChunk writes p as one chunk.
func writeChunk(bw *bufio.Writer, p []byte) error {
	writeInt(bw, int64(len(p)), 16)
	bw.WriteString("\r\n")
	bw.Write(p)
	_, err := bw.WriteString("\r\n")
	return err
}

// writeLastChunk ends a chunked body, with the upstream's trailers.
func writeLastChunk(bw *bufio.Writer, trailer http.Header) {
	bw.WriteString("0\r\n")
	for k, vv := range trailer {
		if skipResponseField(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
}

// writeFastError writes a plain-text error answer that ends the
// connection, with the fields writeError sets on the net/http path.
func writeFastError(bw *bufio.Writer, status int, msg string) {
	bw.WriteString("HTTP/1.1 ")
	writeInt(bw, int64(status), 10)
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(status))
	bw.WriteString("\r\n")
	for _, f := range errorFields {
		writeField(bw, f[0], f[1])
	}
	bw.WriteString("Connection: close\r\n")
	writeLength(bw, int64(len(msg)))
	bw.WriteString("\r\n")
	bw.WriteString(msg)
}
