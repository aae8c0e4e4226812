package framing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Stream is what a client sends after the preface line, built with
// x/net's Framer.
type h2Stream struct {
	buf bytes.Buffer
	fr  *http2.Framer
	hb  bytes.Buffer
	enc *hpack.Encoder
}

func newH2Stream() *h2Stream {
	s := &h2Stream{}
	s.buf.WriteString(h2PrefaceRest)
	s.fr = http2.NewFramer(&s.buf, nil)
	s.enc = hpack.NewEncoder(&s.hb)
	return s
}

func (s *h2Stream) block(fields ...string) []byte {
	s.hb.Reset()
	for i := 0; i < len(fields); i += 2 {
		s.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(s.hb.Bytes())
}

// checkAll feeds in to a new h2Check step bytes at a time.
func checkAll(in []byte, step, maxHold int) (out []byte, c *h2Check, err error) {
	c = newH2Check([]byte(h2PrefaceLine), maxHold)
	for i := 0; i < len(in) && err == nil; i += step {
		out, err = c.Feed(in[i:min(i+step, len(in))], out)
	}
	return out, c, err
}

// serverFrames reads out as Go's server would (after the preface), and
// describes its frames, up to the first error.
func serverFrames(t *testing.T, out []byte) (frames []string, err error) {
	t.Helper()
	if !bytes.HasPrefix(out, []byte(h2PrefaceLine+h2PrefaceRest)) {
		t.Fatalf("output does not start with the preface: %q", out)
	}
	fr := http2.NewFramer(nil, bytes.NewReader(out[len(h2PrefaceLine+h2PrefaceRest):]))
	fr.SetMaxReadFrameSize(H2MaxFrameSize)
	fr.ReadMetaHeaders = hpack.NewDecoder(h2HeaderTableSize, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return frames, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			var ss []string
			f.ForeachSetting(func(s http2.Setting) error { ss = append(ss, s.String()); return nil })
			frames = append(frames, "SETTINGS "+join(ss))
		case *http2.MetaHeadersFrame:
			line := fmt.Sprintf("HEADERS %d", f.StreamID)
			if f.HasPriority() {
				line += fmt.Sprintf(" dep=%d", f.Priority.StreamDep)
			}
			if f.StreamEnded() {
				line += " end"
			}
			frames = append(frames, line)
		default:
			frames = append(frames, f.Header().Type.String())
		}
	}
}

// TestH2CheckRewrites: what the server reads after the checker, frame by
// frame: malformed requests re-framed to depend on themselves (split when
// the block does not fit one frame), malformed trailers without
// END_STREAM, duplicate SETTINGS collapsed; everything else unchanged.
func TestH2CheckRewrites(t *testing.T) {
	s := newH2Stream()
	s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	req := func(extra ...string) []byte {
		return s.block(append([]string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"}, extra...)...)
	}
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: req(), EndStream: true, EndHeaders: true})
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: req("te", "trailers, gzip"), EndStream: true, EndHeaders: true, PadLength: 7})
	big := req("x-big", string(bytes.Repeat([]byte{'~'}, 16300)), "connection", "close")
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: big[:10000]})
	s.fr.WriteContinuation(5, true, big[10000:])
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: req(), EndHeaders: true})
	s.fr.WriteData(7, false, []byte("body"))
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, BlockFragment: s.block("keep-alive", "1"), EndStream: true, EndHeaders: true})
	s.fr.WritePing(false, [8]byte{1})
	in := s.buf.Bytes()

	for _, step := range []int{1, 3, 4096, len(in)} {
		out, _, err := checkAll(in, step, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got, err := serverFrames(t, out)
		if err != io.EOF {
			t.Fatalf("server framer: %v after %v", err, got)
		}
		want := []string{
			"SETTINGS [[MAX_FRAME_SIZE = 20000] [INITIAL_WINDOW_SIZE = 1]]",
			"HEADERS 1 end",
			"HEADERS 3 dep=3 end",
			"HEADERS 5 dep=5", // no END_STREAM: it had none
			"HEADERS 7", "DATA", "HEADERS 7", "PING",
		}
		if join(got) != join(want) {
			t.Errorf("step %d: server reads\n%v\nwant\n%v", step, got, want)
		}
	}
}

func join(s []string) string {
	var b bytes.Buffer
	b.WriteString("[")
	for i, x := range s {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(x)
	}
	b.WriteString("]")
	return b.String()
}

// FuzzH2Check: how the stream is cut into reads changes nothing: the
// same bytes come out, and the same error.
func FuzzH2Check(f *testing.F) {
	s := newH2Stream()
	s.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: s.block(":method", "GET", "connection", "x"), EndStream: true, EndHeaders: true})
	s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: s.block(":method", "GET")})
	s.fr.WriteContinuation(3, true, s.block("te", "x"))
	s.fr.WriteData(3, true, []byte("x"))
	f.Add(s.buf.Bytes(), uint8(1))
	f.Add(s.buf.Bytes(), uint8(9))
	f.Add([]byte("SM\r\n\rX"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		out, _, err := checkAll(in, int(step%32)+1, 4096)
		whole, _, err2 := checkAll(in, len(in)+1, 4096)
		if !bytes.Equal(out, whole) || !errors.Is(err, errH2Preface) != !errors.Is(err2, errH2Preface) || (err == nil) != (err2 == nil) {
			t.Fatalf("reads of %d bytes and one read disagree:\n%q %v\n%q %v", step%32+1, out, err, whole, err2)
		}
	})
}

// BenchmarkH2Check: the checker's cost on a stream of requests, each a
// header block and a 16 KiB body, fed in 4 KiB reads.
func BenchmarkH2Check(b *testing.B) {
	s := newH2Stream()
	s.fr.WriteSettings()
	body := bytes.Repeat([]byte("d"), H2MaxFrameSize)
	for id := uint32(1); id < 200; id += 2 {
		s.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: s.block(
			":method", "POST", ":scheme", "http", ":authority", "echo.test", ":path", fmt.Sprintf("/r/%d", id),
			"content-type", "application/grpc", "te", "trailers", "user-agent", "bench/1.0")})
		s.fr.WriteData(id, true, body)
	}
	in := s.buf.Bytes()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	out := make([]byte, 0, heldCap)
	for b.Loop() {
		c := newH2Check([]byte(h2PrefaceLine), 1<<20)
		for i := 0; i < len(in); i += heldCap {
			var err error
			if out, err = c.Feed(in[i:min(i+heldCap, len(in))], out[:0]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
