package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// Request returns a keep-alive HTTP/1.1 GET for path with the given Host
// header. Every proxy routes by it: procmesh to the route with that host,
// the others ignore it.
func Request(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: procmesh-bench\r\n\r\n")
}

// H1Conn is one keep-alive HTTP/1.1 client connection that sends the same
// request again and again.
type H1Conn struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

// NewH1Conn wraps c.
func NewH1Conn(c net.Conn, req []byte) *H1Conn {
	return &H1Conn{c: c, br: bufio.NewReaderSize(c, 16<<10), req: req}
}

// Close closes the connection.
func (h *H1Conn) Close() error { return h.c.Close() }

// ErrStatus is a response with a status other than 200.
type ErrStatus struct{ Code int }

func (e *ErrStatus) Error() string { return fmt.Sprintf("load: HTTP status %d", e.Code) }

// Do sends the request and reads the whole response. keep is false when the
// server asked to close the connection; the caller must then redial.
func (h *H1Conn) Do() (keep bool, err error) {
	if _, err := h.c.Write(h.req); err != nil {
		return false, err
	}
	return ReadResponse(h.br)
}

// FirstByte sends the request and returns once the first byte of the
// response has arrived, leaving the rest unread.
func (h *H1Conn) FirstByte() error {
	if _, err := h.c.Write(h.req); err != nil {
		return err
	}
	_, err := h.br.Peek(1)
	return err
}

// ReadResponse reads one HTTP/1.1 response (Content-Length, chunked, or to
// the end of the connection) and discards its body. A status other than 200
// is returned as *ErrStatus after the body was read.
func ReadResponse(br *bufio.Reader) (keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	code, err := parseStatusLine(line)
	if err != nil {
		return false, err
	}
	keep = true
	length, chunked := int64(-1), false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return false, fmt.Errorf("load: malformed header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return false, fmt.Errorf("load: bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case chunked:
		err = discardChunked(br)
	case length >= 0:
		_, err = br.Discard(int(length))
	default:
		_, err = io.Copy(io.Discard, br)
		keep = false
	}
	if err != nil {
		return false, err
	}
	if code != 200 {
		return keep, &ErrStatus{Code: code}
	}
	return keep, nil
}

func parseStatusLine(line []byte) (int, error) {
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, fmt.Errorf("load: malformed status line %q", bytes.TrimRight(line, "\r\n"))
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("load: malformed status line %q", bytes.TrimRight(line, "\r\n"))
	}
	return code, nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		sz, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte{';'})
		n, err := strconv.ParseInt(string(bytes.TrimSpace(sz)), 16, 64)
		if err != nil || n < 0 {
			return errors.New("load: bad chunk size")
		}
		if n == 0 {
			// Trailers, then the empty line.
			for {
				l, err := br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(l, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}
