package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/procmesh/procmesh/proxy"
)

// h2Raw is a hostile HTTP/2 client: a Framer on a prior-knowledge h2c
// connection to procmesh, after the SETTINGS exchange.
type h2Raw struct {
	conn           net.Conn
	fr             *http2.Framer
	serverSettings map[http2.SettingID]uint32
	enc            *hpack.Encoder
	hbuf           bytes.Buffer
}

func dialH2C(t *testing.T, sock string) *h2Raw {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	h := &h2Raw{conn: c, fr: http2.NewFramer(c, c), serverSettings: map[http2.SettingID]uint32{}}
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first server frame is %v, want SETTINGS", f)
	}
	sf.ForeachSetting(func(s http2.Setting) error { h.serverSettings[s.ID] = s.Val; return nil })
	if err := h.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return h
}

// block encodes a request header block for GET http://host/path, with
// extra fields.
func (h *h2Raw) block(host, path string, extra ...hpack.HeaderField) []byte {
	h.hbuf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: host}, {Name: ":path", Value: path},
	}, extra...) {
		h.enc.WriteField(f)
	}
	return bytes.Clone(h.hbuf.Bytes())
}

// drain reads frames until the connection fails, and reports whether a
// GOAWAY came first.
func (h *h2Raw) drain(done chan<- bool) {
	goaway := false
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			done <- goaway
			return
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			goaway = true
		}
	}
}

// atomicMax counts something and remembers its peak.
type atomicMax struct{ n, max atomic.Int64 }

func (a *atomicMax) add(d int64) int64 {
	v := a.n.Add(d)
	for m := a.max.Load(); v > m && !a.max.CompareAndSwap(m, v); m = a.max.Load() {
	}
	return v
}
func (a *atomicMax) cur() int64  { return a.n.Load() }
func (a *atomicMax) peak() int64 { return a.max.Load() }

// TestThreat_P5_DownstreamRapidReset: a client that opens streams and
// resets them at once (CVE-2023-44487) gets its connection closed after a
// bounded number of streams; few requests reach the upstream, and every
// goroutine of the connection ends.
//
// Go's server bounds the handlers running at once (MaxConcurrentStreams)
// and closes the connection when reset streams queue up faster than
// handlers finish; procmesh's handlers finish fast, so procmesh adds
// Envoy's rule: after 500 streams, close when half were reset within a
// second of opening.
func TestThreat_P5_DownstreamRapidReset(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	lp := e.startLimited("rapid-reset", proxy.Limits{})
	base := warmBaseline(t, lp.sock)
	before := len(e.echo.Records())

	h := dialH2C(t, lp.sock)
	done := make(chan bool, 1)
	go h.drain(done)
	const attempts = 100_000
	sent := 0
	blk := h.block("echo.test", "/rapid-reset")
	for id := uint32(1); sent < attempts; id += 2 {
		err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk, EndStream: true, EndHeaders: true})
		if err == nil {
			err = h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		if err != nil {
			break
		}
		sent++
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the connection is still open after %d reset streams", sent)
	}
	// The client's count includes frames still in the socket buffer; the
	// server's is in its log line.
	var closed struct {
		Streams    int64 `json:"streams"`
		ResetEarly int64 `json:"reset_early"`
	}
	var lines []string
	eventually(5*time.Second, func() bool { lines = lp.log.Lines("rapid reset"); return len(lines) > 0 })
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &closed) != nil {
		t.Fatalf("want one log line saying why the connection closed, after %d streams sent:\n%s", sent, lp.log.String())
	}
	if closed.Streams > 1000 || closed.ResetEarly*2 < closed.Streams {
		t.Errorf("closed after %d streams, %d reset early", closed.Streams, closed.ResetEarly)
	}
	if n := len(e.echo.Records()) - before; n > 100 {
		t.Errorf("%d of %d reset requests reached the upstream", n, closed.Streams)
	}
	t.Logf("closed after %d streams (%d sent); %d reached the upstream", closed.Streams, sent, len(e.echo.Records())-before)
	settles(t, base, 8, 10*time.Second)
}

// TestThreat_P5_DownstreamContinuationFlood: a header block that never
// ends (CVE-2023-45288) costs bounded work and the connection is closed:
// one that outgrows the header limit at once (Go's server stops decoding
// and closes), one of empty CONTINUATION frames once the connection has
// been without a stream for IdleTimeout.
func TestThreat_P5_DownstreamContinuationFlood(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	lp := e.startLimited("continuation", proxy.Limits{IdleTimeout: 300 * time.Millisecond})
	base := warmBaseline(t, lp.sock)

	flood := func(t *testing.T, frag func(i int) []byte) (frames int, elapsed time.Duration) {
		h := dialH2C(t, lp.sock)
		done := make(chan bool, 1)
		go h.drain(done)
		start := time.Now()
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("echo.test", "/flood"), EndStream: true}); err != nil {
			t.Fatal(err)
		}
		for ; ; frames++ {
			if err := h.fr.WriteContinuation(1, false, frag(frames)); err != nil {
				break
			}
			select {
			case <-done:
				return frames, time.Since(start)
			default:
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("the connection is still open after %d CONTINUATION frames", frames)
			}
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not close")
		}
		return frames, time.Since(start)
	}

	t.Run("oversized", func(t *testing.T) {
		var buf bytes.Buffer
		enc := hpack.NewEncoder(&buf)
		frames, _ := flood(t, func(i int) []byte {
			buf.Reset()
			for j := range 100 {
				enc.WriteField(hpack.HeaderField{Name: fmt.Sprintf("x-flood-%d-%d", i, j), Value: strings.Repeat("v", 100)})
			}
			return bytes.Clone(buf.Bytes())
		})
		// 60 KiB limit, 120 KiB backstop: ~10 KiB a frame.
		if frames > 40 {
			t.Errorf("closed after %d frames of 10 KiB", frames)
		}
	})
	t.Run("empty-frames", func(t *testing.T) {
		frames, elapsed := flood(t, func(int) []byte { return nil })
		t.Logf("closed after %d empty frames in %v", frames, elapsed)
		if elapsed > 5*time.Second {
			t.Errorf("closed after %v", elapsed)
		}
	})
	settles(t, base, 8, 10*time.Second)
}
