package echo

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
)

// HeaderClientID carries the client's SPIFFE ID in every HTTP answer.
const HeaderClientID = "X-Client-SPIFFE-ID"

// HeaderPadding is the N-byte response header of /header-bytes/N.
const HeaderPadding = "X-Echo-Padding"

const (
	maxBodyRead  = 64 << 20 // request bodies beyond this are refused
	maxBytesPath = 64 << 20 // largest N for /bytes/N
)

// Response is the JSON body of an HTTP answer.
type Response struct {
	SPIFFEID string              `json:"spiffe_id"`
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Host     string              `json:"host"`
	Proto    string              `json:"proto"`
	Conn     uint64              `json:"conn"`
	Resumed  bool                `json:"resumed"`
	Headers  map[string][]string `json:"headers"`
	BodyLen  int64               `json:"body_len"`
}

type connIDKey struct{}

func (s *Server) newHTTPServer() *http.Server {
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(!s.opts.DisableHTTP2)
	return &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: handshakeTimeout,
		IdleTimeout:       2 * handshakeTimeout,
		Protocols:         protos,
		ErrorLog:          log.New(debugWriter{s.opts.Logger}, "", 0),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connIDKey{}, s.nextConn.Add(1))
		},
		// StateNew runs in Serve's goroutine before it can return, and
		// every connection ends Closed or Hijacked: Close can wait.
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.connWG.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.connWG.Done()
			}
		},
	}
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		http.Error(w, "echo: not a TLS connection", http.StatusInternalServerError)
		return
	}
	id, err := peerID(*r.TLS)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBodyRead))
	if err != nil {
		http.Error(w, "echo: read body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	connID, _ := r.Context().Value(connIDKey{}).(uint64)
	rec := Record{
		SPIFFEID: id, ConnID: connID, RemoteAddr: r.RemoteAddr, Resumed: r.TLS.DidResume,
		Method: r.Method, Path: r.URL.Path, Host: r.Host, Proto: r.Proto,
		Header: r.Header.Clone(), BodyLen: n,
	}
	s.record(rec)
	s.opts.Logger.Debug().Str("spiffe_id", id.String()).Uint64("conn", connID).Bool("resumed", rec.Resumed).
		Str("method", r.Method).Str("path", r.URL.Path).Msg("echo request")

	w.Header().Set(HeaderClientID, id.String())
	if v := s.altSvcValue(); v != "" {
		w.Header().Set("Alt-Svc", v)
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/header-bytes/"); ok {
		size, err := strconv.Atoi(rest)
		if err != nil || size < 0 || size > maxBytesPath {
			http.Error(w, "echo: /header-bytes/N wants 0 <= N <= 67108864", http.StatusBadRequest)
			return
		}
		w.Header().Set(HeaderPadding, strings.Repeat("p", size))
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/bytes/"); ok {
		size, err := strconv.Atoi(rest)
		if err != nil || size < 0 || size > maxBytesPath {
			http.Error(w, "echo: /bytes/N wants 0 <= N <= 67108864", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = io.CopyN(w, &patternReader{}, int64(size))
		return
	}
	status := http.StatusOK
	if rest, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
		code, err := strconv.Atoi(rest)
		if err != nil || code < 200 || code > 599 {
			http.Error(w, "echo: /status/NNN wants 200 <= NNN <= 599", http.StatusBadRequest)
			return
		}
		status = code
	}
	body, err := json.Marshal(Response{
		SPIFFEID: id.String(), Method: r.Method, Path: r.URL.Path, Host: r.Host, Proto: r.Proto,
		Conn: connID, Resumed: rec.Resumed, Headers: rec.Header, BodyLen: n,
	})
	if err != nil {
		http.Error(w, "echo: encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if status == http.StatusNoContent || status == http.StatusNotModified {
		w.WriteHeader(status) // no body allowed
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// debugWriter turns net/http's error log (TLS handshake failures, mostly
// refused clients) into debug lines.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Str("component", "echo-http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Pattern is what /bytes/N repeats, so a client can check the bytes it got,
// not only their number.
const Pattern = "0123456789abcdef"

type patternReader struct{ off int }

func (r *patternReader) Read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		c := copy(p[n:], Pattern[r.off:])
		n += c
		r.off = (r.off + c) % len(Pattern)
	}
	return len(p), nil
}
