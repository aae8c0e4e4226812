package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/proxy"
)

// hostileTLS is the mTLS server config of a hand-written hostile upstream:
// it presents echoID and verifies the env's clients, like echo, so the
// hostility starts after a real handshake.
func (e *env) hostileTLS(alpn string) *tls.Config {
	e.t.Helper()
	svid, err := e.upCA.Mint(echoID)
	if err != nil {
		e.t.Fatal(err)
	}
	conf := tlsconfig.MTLSServerConfig(svid, x509bundle.NewSet(e.ca.Bundle()), tlsconfig.AuthorizeAny())
	conf.MinVersion = tls.VersionTLS13
	conf.NextProtos = []string{alpn}
	return conf
}

// floodResult is how far a hostile upstream got before procmesh cut it off.
type floodResult struct {
	written int64
	err     error
	streams int // QUIC: unidirectional streams it could open
}

const floodCap = 64 << 20 // what a hostile upstream tries to send

// TestThreat_P5_UpstreamContinuationFlood: an h2 upstream answers with a
// HEADERS frame that never ends, followed by CONTINUATION frames of header
// fields (CVE-2023-45288). procmesh stops reading once the header list
// passes its limit and closes the connection: the upstream gets a write
// error after a small fraction of its 64 MiB, the client a 502, and the
// proxy keeps serving.
func TestThreat_P5_UpstreamContinuationFlood(t *testing.T) {
	t.Parallel()
	e, a := oneClient(t, envOptions{defaultAllow: true})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", e.hostileTLS("h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan floodResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- floodResult{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
			done <- floodResult{err: err}
			return
		}
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		var sid uint32
		for sid == 0 {
			f, err := fr.ReadFrame()
			if err != nil {
				done <- floodResult{err: err}
				return
			}
			if h, ok := f.(*http2.HeadersFrame); ok {
				sid = h.StreamID
			}
		}
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: hb.Bytes()}); err != nil {
			done <- floodResult{err: err}
			return
		}
		hb.Reset()
		for hb.Len() < 15<<10 { // literal, never indexed: every byte costs the decoder
			enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 1000), Sensitive: true})
		}
		var written int64
		for written < floodCap {
			if err := fr.WriteContinuation(sid, false, hb.Bytes()); err != nil {
				done <- floodResult{written: written, err: err}
				return
			}
			written += int64(hb.Len())
		}
		done <- floodResult{written: written}
	}()

	e.withRoutes(e.srv, route("flood", proxy.ProtocolHTTP2, ln.Addr().String()))
	body := e.wantBadGateway(a, "http://flood.test/", "response header block over 61440 bytes")
	var res floodResult
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the flooding upstream was never cut off")
	}
	if res.err == nil || res.written > 16<<20 {
		t.Errorf("upstream wrote %d bytes of CONTINUATION (err %v): want the connection closed well before %d", res.written, res.err, floodCap)
	}
	t.Logf("flood cut off after %d KiB: %v; client saw %q", res.written>>10, res.err, strings.TrimSpace(body))
	rs, err := e.run(a, -1, "origin", "PM_URL=http://echo.test/after-flood")
	if err != nil {
		t.Fatal(err)
	}
	decodeReply(t, rs[0])
}

// TestThreat_P6_HostileQUICUpstream: an HTTP/3 upstream tries to open a
// hundred unidirectional streams and answers with a HEADERS frame that
// declares 1 GiB of QPACK headers, then keeps writing. procmesh lets it
// open no more streams than QUICMaxIncomingUniStreams, refuses the frame by
// its declared length with a 502, and stops the stream: flow control keeps
// what the upstream could push to a few hundred KiB.
func TestThreat_P6_HostileQUICUpstream(t *testing.T) {
	t.Parallel()
	e, a := oneClient(t, envOptions{defaultAllow: true})
	ln, err := quic.ListenAddr("127.0.0.1:0", e.hostileTLS(http3.NextProtoH3), &quic.Config{MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan floodResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := ln.Accept(ctx)
		if err != nil {
			done <- floodResult{err: err}
			return
		}
		defer c.CloseWithError(0, "")
		var res floodResult
		ctl, err := c.OpenUniStream()
		if err != nil {
			done <- floodResult{err: err}
			return
		}
		ctl.Write([]byte{0x00, 0x04, 0x00}) // control stream, empty SETTINGS
		// Open as many as procmesh's stream credit allows (the streams
		// reach it only when written to, after the loop, so the credit
		// cannot grow meanwhile), then send a reserved stream type on each.
		var extra []*quic.SendStream
		for res.streams = 1; res.streams < 100; res.streams++ {
			s, err := c.OpenUniStream()
			if err != nil {
				break
			}
			extra = append(extra, s)
		}
		for _, s := range extra {
			s.Write([]byte{0x21})
		}
		str, err := c.AcceptStream(ctx)
		if err != nil {
			done <- floodResult{err: err}
			return
		}
		str.SetWriteDeadline(time.Now().Add(5 * time.Second))
		// HEADERS (type 1) of 1 GiB, then as much of it as flow control allows.
		if _, err := str.Write(quicvarint.Append(quicvarint.Append(nil, 0x01), 1<<30)); err != nil {
			res.err = err
			done <- res
			return
		}
		chunk := make([]byte, 32<<10)
		for res.written < floodCap {
			n, err := str.Write(chunk)
			res.written += int64(n)
			if err != nil {
				res.err = err
				break
			}
		}
		done <- res
	}()

	e.withRoutes(e.srv, route("hostile-h3", proxy.ProtocolHTTP3, ln.Addr().String()))
	e.wantBadGateway(a, "http://hostile-h3.test/", "HEADERS frame too large")
	var res floodResult
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the hostile upstream never finished")
	}
	var se *quic.StreamError
	if !asStreamError(res.err, &se) || res.written > 4<<20 {
		t.Errorf("upstream wrote %d bytes of a 1 GiB HEADERS frame, ending with %v: want procmesh to stop the stream", res.written, res.err)
	}
	if res.streams > proxy.DefaultQUICMaxIncomingUniStreams {
		t.Errorf("upstream opened %d unidirectional streams, want at most %d", res.streams, proxy.DefaultQUICMaxIncomingUniStreams)
	}
	t.Logf("upstream opened %d uni streams, wrote %d KiB: %v", res.streams, res.written>>10, res.err)
}

func asStreamError(err error, se **quic.StreamError) bool {
	for err != nil {
		if e, ok := err.(*quic.StreamError); ok {
			*se = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestThreat_P8_OversizedResponseHeaders: response headers beyond
// MaxResponseHeaderBytes (60 KiB) fail with a 502 that says so, over
// HTTP/1.1, HTTP/2 and HTTP/3 alike; headers under it pass.
func TestThreat_P8_OversizedResponseHeaders(t *testing.T) {
	t.Parallel()
	e, a := oneClient(t, envOptions{defaultAllow: true})
	up := e.startEchoWith(echo.Options{HTTP3: true})
	e.withRoutes(e.srv,
		route("big-h1", proxy.ProtocolHTTP1, up.Addr()),
		route("big-h2", proxy.ProtocolHTTP2, up.Addr()),
		route("big-h3", proxy.ProtocolHTTP3, up.Addr()),
	)
	for host, want := range map[string]string{
		"big-h1.test": "server response headers exceeded",
		"big-h2.test": "response header block over 61440 bytes",
		"big-h3.test": "headers too large",
	} {
		e.wantBadGateway(a, "http://"+host+"/header-bytes/70000", want, "PM_N=1")
		rs, err := e.run(a, -1, "origin", "PM_URL=http://"+host+"/header-bytes/30000")
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Status != http.StatusOK {
			t.Errorf("%s, 30000-byte header: status %d body %q, want 200", host, rs[0].Status, rs[0].Body)
		}
	}
}
