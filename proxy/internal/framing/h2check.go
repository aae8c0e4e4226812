package framing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/net/http2/hpack"
)

// h2Check follows the HTTP/2 frames a client sends on the main socket after
// the preface, one step ahead of Go's HTTP/2 server (net/http's bundled
// x/net/http2), and changes what that server reads where it would not do
// what RFC 9113 requires (THREATS P1, P2, P5):
//
//   - An invalid connection preface ends the connection (§3.4): net/http
//     serves "PRI * HTTP/2.0" followed by anything but "SM\r\n\r\n" as an
//     HTTP/1.1 request, which procmesh would answer.
//   - A request whose header section carries a connection-specific field
//     (Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
//     Upgrade) or a TE other than one "trailers" is malformed (§8.2.2): a
//     stream error of type PROTOCOL_ERROR. Go's server answers most of
//     them with a 400 response on an open stream, and accepts an empty TE.
//     The checker decodes every header block with its own HPACK decoder
//     (in step with the server's), and re-frames a malformed one so that
//     the server resets the stream with PROTOCOL_ERROR before any handler
//     sees it: a request's HEADERS frame is given a priority that depends
//     on its own stream (§5.3.1 in RFC 7540, checked once the stream
//     exists, so that the body the client may still send is discarded with
//     the stream and the connection lives on); trailers lose END_STREAM
//     (trailers must end the stream). The block itself is unchanged, so
//     both HPACK decoders stay in step.
//   - A SETTINGS frame with a parameter more than once is processed in
//     order (§6.5.3): Go's server closes the connection on duplicates, so
//     the checker keeps only the last value of each (or the first invalid
//     one, so that the server refuses it with the right error code). The
//     one difference from processing each value in turn: a window that an
//     earlier SETTINGS_INITIAL_WINDOW_SIZE value would have overflowed
//     for a moment (FLOW_CONTROL_ERROR) is not detected.
//
// Frames larger than the SETTINGS_MAX_FRAME_SIZE procmesh advertises
// (H2MaxFrameSize, the protocol's initial value, so that it holds before
// the client has seen procmesh's SETTINGS too) Go's server refuses itself
// with FRAME_SIZE_ERROR (§4.2). On anything after which Go's server ends
// the connection anyway (such a frame, a frame other than CONTINUATION
// inside a header block, a PUSH_PROMISE, broken HPACK), the checker stops
// and lets the rest through unchanged. A header block is held until it is
// complete, up to maxHold bytes; a larger one ends the connection.
type h2Check struct {
	state   h2State
	err     error // sticky: the connection must end
	matched int   // bytes of "SM\r\n\r\n" seen

	hdr    [h2FrameHeaderLen]byte
	nhdr   int
	remain uint32 // payload bytes of the current frame still to come
	typ    uint8  // of the frame being held
	flags  uint8
	start  int // offset in held of the payload being held

	// The frames held back (a header block, or a SETTINGS frame), frame
	// headers included, and the header block fragments they carry.
	held, frag []byte
	maxHold    int
	block      uint32 // stream of the header block being read; 0: none
	blockFlags uint8  // flags of its HEADERS frame
	maxStream  uint32 // highest stream a request was opened on

	dec       *hpack.Decoder
	malformed string // why the header block being read is malformed
	te        int    // TE fields in it
}

type h2State uint8

// heldCap bounds the buffer a checker keeps between requests.
const heldCap = 4 << 10

const (
	h2Preface h2State = iota // the "SM\r\n\r\n" of the preface
	h2Head                   // a frame header
	h2Payload                // the payload of a frame passed as it comes
	h2Hold                   // the payload of a frame held back
	h2Off                    // not checking any more: the server ends the connection
)

const (
	// H2MaxFrameSize is the SETTINGS_MAX_FRAME_SIZE procmesh advertises:
	// the protocol's initial value (H2ServerConfig).
	H2MaxFrameSize = 16 << 10
	// h2HeaderTableSize is the HPACK dynamic table size the server's
	// decoder allows (SETTINGS_HEADER_TABLE_SIZE); the checker's decoder
	// must allow the same.
	h2HeaderTableSize = 4096

	h2FrameHeaderLen = 9
	h2PrefaceLine    = "PRI * HTTP/2.0\r\n\r\n"
	h2PrefaceRest    = "SM\r\n\r\n"

	h2FrameHeaders      = 0x1
	h2FrameSettings     = 0x4
	h2FramePushPromise  = 0x5
	h2FrameContinuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagAck        = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20

	// h2MaxSettings bounds the SETTINGS frames the checker rewrites; Go's
	// server closes the connection on larger ones.
	h2MaxSettings = 100
)

// errH2Preface and errH2Block end a connection without an answer.
var (
	errH2Preface = errors.New("invalid HTTP/2 connection preface")
	errH2Block   = errors.New("HTTP/2 header block too large")
)

// H2ServerConfig is the HTTP/2 configuration of Server.http: h2Check
// follows what clients send with the frame size and HPACK table size
// given here.
func H2ServerConfig(maxStreams int) *http.HTTP2Config {
	return &http.HTTP2Config{MaxConcurrentStreams: maxStreams,
		MaxReadFrameSize: H2MaxFrameSize, MaxDecoderHeaderTableSize: h2HeaderTableSize}
}

// isH2Preface reports that a request line opens the HTTP/2 preface.
func isH2Preface(reqLine []byte) bool {
	return string(reqLine) == h2PrefaceLine[:len(h2PrefaceLine)-4]
}

// notHTTP ends a connection whose first request line is not HTTP at all:
// neither an HTTP/1.x request nor the HTTP/2 preface. A client speaking
// HTTP/2 with a broken preface must see the connection end (RFC 9113
// §3.4), not an HTTP/1.1 answer; later request lines on a connection that
// spoke HTTP/1.1 are refused with 400 as usual.
func (s *Scanner) notHTTP(head, out []byte) []byte {
	s.state, s.h2 = scanH2, newH2Check(head, 0) // its preface is broken: the read fails
	return out
}

// newH2Check starts checking after head, the request head that opened the
// preface: it must be the preface's own "PRI * HTTP/2.0\r\n\r\n".
func newH2Check(head []byte, maxHold int) *h2Check {
	c := &h2Check{maxHold: maxHold}
	if string(head) != h2PrefaceLine {
		c.err = errH2Preface
	}
	c.dec = hpack.NewDecoder(h2HeaderTableSize, c.field)
	return c
}

// feed checks in and appends to out what the HTTP/2 server may read now.
// A non-nil error means the connection must end; out is then complete.
func (c *h2Check) Feed(in, out []byte) ([]byte, error) {
	for len(in) > 0 && c.err == nil {
		switch c.state {
		case h2Off:
			return append(out, in...), nil
		case h2Preface:
			for len(in) > 0 && c.matched < len(h2PrefaceRest) {
				if in[0] != h2PrefaceRest[c.matched] {
					c.err = errH2Preface
					return out, c.err
				}
				c.matched++
				in = in[1:]
			}
			if c.matched == len(h2PrefaceRest) {
				out = append(out, h2PrefaceLine+h2PrefaceRest...)
				c.state = h2Head
			}
		case h2Head:
			n := copy(c.hdr[c.nhdr:], in)
			c.nhdr += n
			in = in[n:]
			if c.nhdr == h2FrameHeaderLen {
				c.nhdr = 0
				out = c.frameHead(out)
			}
		case h2Payload:
			n := min(uint32(len(in)), c.remain)
			out = append(out, in[:n]...)
			in = in[n:]
			if c.remain -= n; c.remain == 0 {
				c.state = h2Head
			}
		case h2Hold:
			n := min(uint32(len(in)), c.remain)
			c.held = append(c.held, in[:n]...)
			in = in[n:]
			if c.remain -= n; c.remain == 0 {
				out = c.frameDone(out)
			}
		}
	}
	return out, c.err
}

// frameHead decides what to do with the frame whose header was just read.
func (c *h2Check) frameHead(out []byte) []byte {
	h := c.hdr[:]
	length := uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	typ, flags := h[3], h[4]
	stream := binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	c.remain = length
	hold := false
	switch {
	case length > H2MaxFrameSize, typ == h2FramePushPromise:
		return c.off(out) // FRAME_SIZE_ERROR, PROTOCOL_ERROR
	case c.block != 0:
		if typ != h2FrameContinuation || stream != c.block {
			return c.off(out) // PROTOCOL_ERROR: the block must go on
		}
		hold = true
	case typ == h2FrameHeaders:
		if stream == 0 {
			return c.off(out)
		}
		c.block, c.blockFlags = stream, flags
		c.held, c.frag = c.held[:0], c.frag[:0]
		c.malformed, c.te = "", 0
		hold = true
	case typ == h2FrameContinuation:
		return c.off(out) // PROTOCOL_ERROR: no block to continue
	case typ == h2FrameSettings && stream == 0 && flags&h2FlagAck == 0 && length%6 == 0 && length <= 6*h2MaxSettings:
		c.held = c.held[:0]
		hold = true
	}
	if !hold {
		out = append(out, h...)
		if length > 0 {
			c.state = h2Payload
		}
		return out
	}
	if len(c.held)+len(h)+int(length) > c.maxHold {
		c.err = fmt.Errorf("%w: more than %d bytes", errH2Block, c.maxHold)
		return out
	}
	c.typ, c.flags = typ, flags
	c.held = append(c.held, h...)
	c.start = len(c.held)
	if length == 0 {
		return c.frameDone(out)
	}
	c.state = h2Hold
	return out
}

// off stops checking: what was held and the frame header just read go to
// the server, which ends the connection because of them.
func (c *h2Check) off(out []byte) []byte {
	c.state = h2Off
	out = append(out, c.held...)
	c.held, c.frag = nil, nil
	return append(out, c.hdr[:]...)
}

// frameDone handles a held frame once its payload is complete.
func (c *h2Check) frameDone(out []byte) []byte {
	c.state = h2Head
	if c.typ == h2FrameSettings {
		out = c.settings(out)
		c.held = c.held[:0]
		return out
	}
	p := c.held[c.start:]
	if c.typ == h2FrameHeaders {
		pad := 0
		if c.flags&h2FlagPadded != 0 {
			if len(p) == 0 {
				return c.offHeld(out)
			}
			pad = int(p[0])
			p = p[1:]
		}
		if c.flags&h2FlagPriority != 0 {
			if len(p) < 5 {
				return c.offHeld(out)
			}
			p = p[5:]
		}
		if pad > len(p) {
			return c.offHeld(out) // PROTOCOL_ERROR
		}
		p = p[:len(p)-pad]
	}
	c.frag = append(c.frag, p...)
	if _, err := c.dec.Write(p); err != nil {
		return c.offHeld(out) // COMPRESSION_ERROR
	}
	if c.flags&h2FlagEndHeaders == 0 {
		return out
	}
	if err := c.dec.Close(); err != nil {
		return c.offHeld(out)
	}
	return c.blockDone(out)
}

// offHeld stops checking after a held frame the server refuses.
func (c *h2Check) offHeld(out []byte) []byte {
	c.state = h2Off
	out = append(out, c.held...)
	c.held, c.frag = nil, nil
	return out
}

// blockDone releases a complete header block, re-framed if malformed.
func (c *h2Check) blockDone(out []byte) []byte {
	stream := c.block
	c.block = 0
	request := stream > c.maxStream // else trailers (or refused anyway)
	if request {
		c.maxStream = stream
	}
	switch {
	case c.malformed == "":
		out = append(out, c.held...)
	case request:
		out = c.resetRequest(out, stream)
	default:
		// Trailers that do not end the stream: the server resets it.
		c.held[4] &^= h2FlagEndStream
		out = append(out, c.held...)
	}
	c.held, c.frag = c.held[:0], c.frag[:0]
	if cap(c.held) > heldCap {
		c.held, c.frag = nil, nil // keep no large buffer between requests
	}
	return out
}

// resetRequest writes the held header block again as a HEADERS frame whose
// stream depends on itself, and CONTINUATION frames for what does not fit:
// the server opens the stream, decodes the block, and resets the stream
// with PROTOCOL_ERROR.
func (c *h2Check) resetRequest(out []byte, stream uint32) []byte {
	frag := c.frag
	n := min(len(frag), H2MaxFrameSize-5)
	flags := c.blockFlags&h2FlagEndStream | h2FlagPriority
	if n == len(frag) {
		flags |= h2FlagEndHeaders
	}
	out = appendFrameHeader(out, 5+n, h2FrameHeaders, flags, stream)
	out = binary.BigEndian.AppendUint32(out, stream) // depends on itself
	out = append(out, 15)                            // weight 16
	out = append(out, frag[:n]...)
	for frag = frag[n:]; len(frag) > 0; frag = frag[n:] {
		n = min(len(frag), H2MaxFrameSize)
		flags = 0
		if n == len(frag) {
			flags = h2FlagEndHeaders
		}
		out = appendFrameHeader(out, n, h2FrameContinuation, flags, stream)
		out = append(out, frag[:n]...)
	}
	return out
}

func appendFrameHeader(out []byte, length int, typ, flags uint8, stream uint32) []byte {
	out = append(out, byte(length>>16), byte(length>>8), byte(length), typ, flags)
	return binary.BigEndian.AppendUint32(out, stream)
}

// field judges one field of the header block being decoded (§8.2.2).
func (c *h2Check) field(f hpack.HeaderField) {
	if c.malformed != "" {
		return
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		c.malformed = "connection-specific header field " + f.Name
	case "te":
		if c.te++; c.te > 1 || f.Value != "trailers" {
			c.malformed = "TE other than a single \"trailers\""
		}
	}
}

// settings releases the held SETTINGS frame with each parameter once: its
// last value, or its first invalid one.
func (c *h2Check) settings(out []byte) []byte {
	p := c.held[h2FrameHeaderLen:]
	n := len(p) / 6
	id := func(i int) uint16 { return binary.BigEndian.Uint16(p[6*i:]) }
	valid := func(i int) bool { return settingValid(id(i), binary.BigEndian.Uint32(p[6*i+2:])) }
	kept := func(i int) bool {
		for j := range n {
			if id(j) == id(i) && !valid(j) {
				return j == i
			}
		}
		for j := i + 1; j < n; j++ {
			if id(j) == id(i) {
				return false
			}
		}
		return true
	}
	var keep [h2MaxSettings]bool
	k := 0
	for i := range n {
		if keep[i] = kept(i); keep[i] {
			k++
		}
	}
	if k == n {
		return append(out, c.held...)
	}
	out = appendFrameHeader(out, 6*k, h2FrameSettings, c.held[4], 0)
	for i := range n {
		if keep[i] {
			out = append(out, p[6*i:6*i+6]...)
		}
	}
	return out
}

// settingValid is x/net/http2's Setting.Valid: a value it refuses.
func settingValid(id uint16, v uint32) bool {
	switch id {
	case 0x2, 0x8: // ENABLE_PUSH, ENABLE_CONNECT_PROTOCOL
		return v <= 1
	case 0x4: // INITIAL_WINDOW_SIZE
		return v <= 1<<31-1
	case 0x5: // MAX_FRAME_SIZE
		return v >= 16384 && v <= 1<<24-1
	}
	return true
}
