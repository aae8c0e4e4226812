package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procmesh/procmesh/internal/rawio"
	"github.com/procmesh/procmesh/policy"
)

// HeaderXFCC is the field procmesh sets (pass_identity xfcc) and always
// removes from what callers send (THREATS N2).
const HeaderXFCC = "X-Forwarded-Client-Cert"

// connInfo is what the handler knows of an HTTP client connection.
type connInfo struct {
	peer *peer
	tls  *tls.Conn

	released         sync.Once
	streams, resets  atomic.Int64
	rapidResetClosed atomic.Bool
}

type connKey struct{}

// The rapid-reset rule of proxy (THREATS P5), Envoy's numbers: once 500
// streams ended on a connection and half or more were reset by the client
// within a second of opening, the connection is closed.
const (
	rapidResetMinStreams = 500
	rapidResetLifetime   = time.Second
)

func (s *Server) newHTTPServer(l *listener) *http.Server {
	lim := s.opts.Limits
	srv := &http.Server{
		Handler:           l,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxRequestHeaderBytes,
		ErrorLog:          log.New(debugWriter{l}, "", 0),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: lim.MaxConcurrentStreams,
		},
		Protocols: new(http.Protocols),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ci, ok := l.conns.Load(c); ok {
				return context.WithValue(ctx, connKey{}, ci)
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st != http.StateClosed && st != http.StateHijacked {
				return
			}
			if v, ok := l.conns.LoadAndDelete(c); ok {
				ci := v.(*connInfo)
				ci.released.Do(func() { s.releaseID(ci.peer.id); s.release() })
			}
		},
	}
	srv.Protocols.SetHTTP1(true)
	if l.cfg.Load().Protocol == "http2" {
		srv.Protocols.SetHTTP2(true)
	}
	return srv
}

// debugWriter sends net/http's own log lines to procmesh's log at debug.
type debugWriter struct{ l *listener }

func (d debugWriter) Write(p []byte) (int, error) {
	d.l.srv.log.Debug().Str("inbound", d.l.cfg.Load().Name).Str("http", string(p)).Msg("inbound http server")
	return len(p), nil
}

// newTransport makes the connections to l's service: each one attested
// before use (THREATS N3), HTTP/1.1 or h2c by the listener's protocol.
func (s *Server) newTransport(l *listener) *http.Transport {
	o := s.opts
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, _, err := l.svc.Load().dial(ctx)
			if err != nil {
				return nil, err
			}
			return rawio.Wrap(c), nil
		},
		MaxIdleConns:           o.MaxIdlePerService,
		MaxIdleConnsPerHost:    o.MaxIdlePerService,
		IdleConnTimeout:        o.ServiceIdleTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: int64(o.MaxResponseHeaderBytes),
		DisableCompression:     true,
		Protocols:              new(http.Protocols),
	}
	if l.cfg.Load().Protocol == "http2" {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return tr
}

// ServeHTTP authorises one request of a verified caller and forwards it to
// the service with the caller's identity in X-Forwarded-Client-Cert.
func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	if ci == nil { // cannot happen: every conn is registered before Serve sees it
		http.Error(w, "procmesh: no verified caller", http.StatusInternalServerError)
		return
	}
	cfg := l.cfg.Load()
	lim := l.srv.opts.Limits
	ev := &auditEvent{kind: "inbound_request", listener: cfg.Name, peer: ci.peer, addr: ci.peer.addr, start: start,
		method: r.Method, target: r.URL.RequestURI()}
	if r.ProtoMajor == 2 {
		defer l.countStream(ci, r, start)
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() { ev.status, ev.down = sw.status, sw.n; l.audit(ev) }()

	if n, fields := requestHeaderSize(r); fields > lim.MaxRequestHeaders || n > lim.MaxRequestHeaderBytes {
		ev.err = errLimit("limits.max_request_headers / limits.max_request_header_bytes")
		refuse(sw, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("procmesh: request has %d header fields, %d bytes: over limits.max_request_headers (%d) or limits.max_request_header_bytes (%d)",
			fields, n, lim.MaxRequestHeaders, lim.MaxRequestHeaderBytes))
		return
	}
	escaped := r.URL.EscapedPath()
	norm, err := policy.NormalizePath(escaped)
	if err == nil && norm != escaped {
		err = setEscapedPath(r.URL, norm)
	}
	if err != nil {
		ev.err = err
		refuse(sw, http.StatusBadRequest, fmt.Sprintf("procmesh: request path refused: %v", err))
		return
	}
	dec := cfg.Policy.Decide(policy.Request{Source: ci.peer.id, Route: cfg.Name, Method: r.Method, Path: norm, Header: r.Header})
	ev.decision = &dec
	if !dec.Allow {
		refuse(sw, http.StatusForbidden, "procmesh: denied by policy: "+dec.Reason)
		return
	}
	if max := lim.MaxRequestBodyBytes; max > 0 {
		if r.ContentLength > max {
			ev.err = errLimit("limits.max_request_body_bytes")
			refuse(sw, http.StatusRequestEntityTooLarge, fmt.Sprintf("procmesh: request body of %d bytes is over limits.max_request_body_bytes (%d)", r.ContentLength, max))
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, max)
	}
	// The caller's identity is what procmesh verified, never a field it
	// sent (THREATS N2, P9).
	r.Header.Del(HeaderXFCC)
	for _, h := range l.srv.opts.RequestHeadersToRemove {
		r.Header.Del(h)
	}
	if cfg.PassIdentity == "xfcc" {
		r.Header.Set(HeaderXFCC, XFCC(cfg.Identity.String(), ci.peer.hash, ci.peer.id.String()))
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	if d := lim.RequestTimeout; d > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, d, errLimit("limits.request_timeout"))
		defer stop()
	}
	if d := lim.StreamIdleTimeout; d > 0 {
		iw := newIdleWatch(d, func() { cancel(errLimit("limits.stream_idle_timeout")) })
		defer iw.stop()
		sw.touch = iw.touch
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &touchBody{ReadCloser: r.Body, touch: iw.touch}
		}
	}
	tr := l.tr.Load()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", cfg.Name
			pr.Out.Host = pr.In.Host
		},
		Transport:     tr,
		BufferPool:    l.srv.bufs, // else 32 KiB allocated per request
		FlushInterval: -1,
		ErrorLog:      log.New(debugWriter{l}, "", 0),
		ModifyResponse: func(resp *http.Response) error {
			if n := len(resp.Header); n > lim.MaxResponseHeaders {
				return fmt.Errorf("%w: the service's response has %d header fields", errLimit("limits.max_response_headers"), n)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if c := context.Cause(r.Context()); c != nil && r.Context().Err() != nil {
				err = c
			}
			ev.err = err
			var se *ServiceError
			var le *limitError
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				// The body went over limits.max_request_body_bytes
				// while streaming: the caller's fault, not the
				// service's (limits.md: 413).
				ev.err = fmt.Errorf("%w: request body over %d bytes", errLimit("limits.max_request_body_bytes"), mbe.Limit)
				refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("procmesh: request body is over limits.max_request_body_bytes (%d)", mbe.Limit))
			case errors.As(err, &se):
				// The caller learns nothing of the node's processes;
				// the audit line has them.
				refuse(w, http.StatusServiceUnavailable, "procmesh: the service is not available")
			case errors.As(err, &le) && le.key == "limits.stream_idle_timeout", errors.As(err, &le) && le.key == "limits.request_timeout":
				refuse(w, http.StatusGatewayTimeout, "procmesh: "+le.Error())
			default:
				refuse(w, http.StatusBadGateway, "procmesh: the service failed to answer")
			}
		},
	}
	rp.ServeHTTP(sw, r.WithContext(ctx))
}

// XFCC is the one X-Forwarded-Client-Cert element procmesh sets: By, this
// hop's SPIFFE ID; Hash, the sha256 hex of the caller's certificate DER;
// URI, the caller's SPIFFE ID (Envoy's keys). SPIFFE IDs hold none of
// the characters ",;=\"" that would need quoting.
func XFCC(by, hash, uri string) string {
	return "By=" + by + ";Hash=" + hash + ";URI=" + uri
}

// countStream applies the rapid-reset rule to an ended HTTP/2 stream.
func (l *listener) countStream(ci *connInfo, r *http.Request, start time.Time) {
	premature := r.Context().Err() != nil && time.Since(start) < rapidResetLifetime
	total := ci.streams.Add(1)
	resets := ci.resets.Load()
	if premature {
		resets = ci.resets.Add(1)
	}
	if total >= rapidResetMinStreams && resets*2 >= total && ci.rapidResetClosed.CompareAndSwap(false, true) {
		l.srv.log.Warn().Str("inbound", l.cfg.Load().Name).Str("peer_id", ci.peer.id.String()).Str("peer_addr", ci.peer.addr.String()).
			Int64("streams", total).Int64("reset_early", resets).
			Msg("closed an inbound HTTP/2 connection whose client reset most of its streams early (rapid reset, THREATS P5, N4)")
		ci.tls.Close()
	}
}

// requestHeaderSize counts a request's header fields and their bytes as
// proxy does: name, value and 4 bytes of framing per field line.
func requestHeaderSize(r *http.Request) (bytes, fields int) {
	bytes = len(r.Method) + len(r.RequestURI) + len(r.Host)
	for name, vals := range r.Header {
		for _, v := range vals {
			bytes += len(name) + len(v) + 4
			fields++
		}
	}
	return bytes, fields
}

// setEscapedPath sets u's path to the normalised escaped path p.
func setEscapedPath(u *url.URL, p string) error {
	dec, err := url.PathUnescape(p)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = dec, p
	if u.EscapedPath() != p {
		u.RawPath = ""
	}
	return nil
}

func refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// statusWriter records the status and bytes of a response and counts it
// as activity for the stream idle timeout.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
	touch  func()
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.touch != nil {
		w.touch()
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type touchBody struct {
	io.ReadCloser
	touch func()
}

func (b *touchBody) Read(p []byte) (int, error) {
	b.touch()
	return b.ReadCloser.Read(p)
}

// idleWatch calls fire once nothing touched it for d.
type idleWatch struct {
	d    time.Duration
	last atomic.Int64
	t    *time.Timer
	fire func()
}

func newIdleWatch(d time.Duration, fire func()) *idleWatch {
	iw := &idleWatch{d: d, fire: fire}
	iw.touch()
	iw.t = time.AfterFunc(d, iw.check)
	return iw
}

func (iw *idleWatch) touch() { iw.last.Store(time.Now().UnixNano()) }

func (iw *idleWatch) check() {
	idle := time.Since(time.Unix(0, iw.last.Load()))
	if idle >= iw.d {
		iw.fire()
		return
	}
	iw.t.Reset(iw.d - idle)
}

func (iw *idleWatch) stop() { iw.t.Stop() }
