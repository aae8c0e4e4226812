package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// maxHeader bounds a request head; the responder closes connections that
// send more.
const maxHeader = 16 << 10

// Response returns the fixed HTTP/1.1 response: 200, Content-Length, body of
// n bytes.
func Response(n int) []byte {
	head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n"
	return append([]byte(head), Body(n)...)
}

// Body is the fixed response body of n bytes.
func Body(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }

// serveH1 answers keep-alive HTTP/1.1 requests on c with resp until the
// client closes, sends Connection: close, or idles for idle.
func serveH1(c net.Conn, resp []byte, idle time.Duration) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4<<10)
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		bodyLen, closeAfter, err := readRequestHead(br)
		if err != nil {
			return
		}
		if bodyLen > 0 {
			if _, err := io.CopyN(io.Discard, br, bodyLen); err != nil {
				return
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
		if closeAfter {
			return
		}
	}
}

var errHeadTooLarge = errors.New("upstream: request head too large")

// readRequestHead reads one request line and its headers, and returns the
// Content-Length and whether the client asked to close.
func readRequestHead(br *bufio.Reader) (bodyLen int64, closeAfter bool, err error) {
	total := 0
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		total += len(line)
		if total > maxHeader {
			return 0, false, errHeadTooLarge
		}
		line = bytes.TrimRight(line, "\r\n")
		if first {
			continue
		}
		if len(line) == 0 {
			return bodyLen, closeAfter, nil
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			bodyLen, err = strconv.ParseInt(string(value), 10, 64)
			if err != nil || bodyLen < 0 {
				return 0, false, errors.New("upstream: bad Content-Length")
			}
		case bytes.EqualFold(name, []byte("Connection")):
			closeAfter = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false, errors.New("upstream: chunked request bodies are not supported")
		}
	}
}
