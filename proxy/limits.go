package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/procmesh/procmesh/internal/units"
	"github.com/procmesh/procmesh/proxy/internal/defaults"
)

// Limits bound what one client, connection or request can make procmesh
// hold: header bytes and fields, time, HTTP/2 streams, connections and body
// bytes (THREATS P5, P7, P8, F9). Each field says its default, the Envoy
// setting it follows and the YAML key proposed for it under `limits:`; a
// refusal caused by a limit names that key, so the operator knows what to
// raise. Zero takes the default.
//
// Two limits of the same family live in UpstreamOptions, with the upstream
// connections they bound: DialTimeout, the connect timeout (TCP and TLS
// handshake; YAML upstream.connect_timeout; Envoy's connect_timeout is 5s),
// and MaxResponseHeaderBytes (YAML limits.max_response_header_bytes).
type Limits struct {
	// MaxRequestHeaderBytes bounds a request's header section: for
	// HTTP/1.1 the request line and header lines as received, for HTTP/2
	// the pseudo-headers and every field's name and value. Over it the
	// request is answered 431 and, on HTTP/1.1, the connection closed.
	// Default 60 KiB, Envoy's max_request_headers_kb default.
	// YAML limits.max_request_header_bytes.
	MaxRequestHeaderBytes int
	// MaxRequestHeaders bounds the number of request header fields; 431
	// over it. Default 100, Envoy's max_headers_count default.
	// YAML limits.max_request_headers.
	MaxRequestHeaders int
	// MaxResponseHeaders bounds the number of header fields of an upstream
	// response; 502 over it. (Response header bytes are bounded by
	// UpstreamOptions.MaxResponseHeaderBytes.) Default 100, Envoy's
	// cluster max_headers_count default.
	// YAML limits.max_response_headers.
	MaxResponseHeaders int

	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's header section, counted from its first byte (and, on a new
	// connection, from the accept). Negative: no limit. Default 10s. Envoy's
	// request_headers_timeout is off by default; procmesh's clients are
	// local and send headers in one write, so a slow header is an attack
	// (slowloris, P7). YAML limits.header_read_timeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client connections with no request in flight for
	// this long (HTTP/1.1 keep-alive, HTTP/2 with no open stream).
	// Negative: never. Default 60s. Envoy's idle_timeout default is 1h;
	// procmesh is shorter because idle connections count against
	// MaxConnections and a local client reconnects in microseconds.
	// YAML limits.idle_timeout.
	IdleTimeout time.Duration
	// RequestTimeout bounds a whole exchange, from the request's headers to
	// the response's last byte; the client gets 504 when nothing was sent
	// yet, a cut response otherwise. For an upgrade (WebSocket) it bounds
	// the time to the 101. Default 0: off. Envoy's route timeout defaults
	// to 15s, which cuts long polls, downloads, server-sent events and gRPC
	// streams; procmesh carries all of those, so it relies on
	// StreamIdleTimeout by default, as Envoy's max_stream_duration (also
	// off by default) does. YAML limits.request_timeout.
	RequestTimeout time.Duration
	// StreamIdleTimeout ends a request, WebSocket or CONNECT tunnel on
	// which no byte moved in either direction for this long, including
	// the wait for the upstream's response headers: 408 if the client had
	// not finished its request body, 504 if the upstream had not answered,
	// a cut stream otherwise. Negative: never. Default 5m, Envoy's
	// stream_idle_timeout default. YAML limits.stream_idle_timeout.
	StreamIdleTimeout time.Duration
	// MaxConcurrentStreams bounds the open streams of one HTTP/2 (h2c)
	// client connection. Default 100: Envoy's default is 2^31-1, its edge
	// guide recommends 100. YAML limits.max_concurrent_streams.
	MaxConcurrentStreams int

	// MaxConnections bounds the client connections procmesh holds, all
	// sockets together, so that it sheds load before it runs out of file
	// descriptors (F9). Over it, an HTTP connection is answered 503 with
	// Retry-After and closed, a raw one gets a line of text and is closed.
	// Negative: no limit. Default 10000. Envoy sets no default; its
	// overload manager's global_downstream_max_connections is the
	// equivalent. YAML limits.max_connections.
	MaxConnections int
	// MaxConnectionsPerIdentity bounds the client connections of one SPIFFE
	// ID, so that one workload cannot take every connection. Refused as
	// MaxConnections is. Negative: no limit. Default 1000. Envoy has no
	// equivalent. YAML limits.max_connections_per_identity.
	MaxConnectionsPerIdentity int
	// MaxUnattestedConnectionsPerUID bounds the client connections of one
	// uid (SO_PEERCRED, known at accept) that have no identity: attestation
	// is running, or found that the process matches no entry (F11). Within
	// the bound such a connection is answered at its first request and
	// closed; over it, a connection is attested before it is served: one
	// whose process has an identity is served as any other, so a
	// registered process is never refused for what unregistered ones of
	// its uid hold, and one without is told why and closed at once. So
	// unregistered processes cannot take the MaxConnections slots of
	// registered callers while MaxConnections exceeds this bound times the
	// uids that may connect. Negative: no limit. Default 64. Envoy has no
	// equivalent. YAML limits.max_unattested_connections_per_uid.
	MaxUnattestedConnectionsPerUID int

	// MaxRequestBodyBytes bounds a request body; 413 over it (announced by
	// Content-Length, or counted while streaming). Default 0: unlimited,
	// bodies are streamed and never buffered, as Envoy streams them.
	// YAML limits.max_request_body_bytes.
	MaxRequestBodyBytes int64
}

// Defaults of Limits.
const (
	DefaultMaxRequestHeaderBytes     = 60 << 10
	DefaultMaxRequestHeaders         = 100
	DefaultMaxResponseHeaders        = 100
	DefaultReadHeaderTimeout         = 10 * time.Second
	DefaultIdleTimeout               = 60 * time.Second
	DefaultStreamIdleTimeout         = 5 * time.Minute
	DefaultMaxConcurrentStreams      = 100
	DefaultMaxConnections            = 10000
	DefaultMaxConnectionsPerIdentity = 1000

	DefaultMaxUnattestedConnectionsPerUID = 64
)

// YAML keys of the limits, named in the refusals they cause.
const (
	keyRequestHeaderBytes  = "limits.max_request_header_bytes"
	keyRequestHeaders      = "limits.max_request_headers"
	keyResponseHeaders     = "limits.max_response_headers"
	keyResponseHeaderBytes = "limits.max_response_header_bytes"
	keyRequestTimeout      = "limits.request_timeout"
	keyStreamIdleTimeout   = "limits.stream_idle_timeout"
	keyMaxConnections      = "limits.max_connections"
	keyMaxConnectionsPerID = "limits.max_connections_per_identity"
	keyMaxUnattestedPerUID = "limits.max_unattested_connections_per_uid"
	keyRequestBodyBytes    = "limits.max_request_body_bytes"
)

// WithDefaults returns l with every zero field at its default and every
// negative one at 0 (off), as Server applies them; package inbound applies
// the same limits to its listeners.
func (l Limits) WithDefaults() Limits { return l.withDefaults() }

func (l Limits) withDefaults() Limits {
	l.MaxRequestHeaderBytes = defaults.PositiveOr(l.MaxRequestHeaderBytes, DefaultMaxRequestHeaderBytes)
	l.MaxRequestHeaders = defaults.PositiveOr(l.MaxRequestHeaders, DefaultMaxRequestHeaders)
	l.MaxResponseHeaders = defaults.PositiveOr(l.MaxResponseHeaders, DefaultMaxResponseHeaders)
	l.MaxConcurrentStreams = defaults.PositiveOr(l.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	l.ReadHeaderTimeout = defaults.OffIfNegative(defaults.Or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout))
	l.IdleTimeout = defaults.OffIfNegative(defaults.Or(l.IdleTimeout, DefaultIdleTimeout))
	l.StreamIdleTimeout = defaults.OffIfNegative(defaults.Or(l.StreamIdleTimeout, DefaultStreamIdleTimeout))
	l.MaxConnections = defaults.Or(l.MaxConnections, DefaultMaxConnections)
	l.MaxConnectionsPerIdentity = defaults.Or(l.MaxConnectionsPerIdentity, DefaultMaxConnectionsPerIdentity)
	l.MaxUnattestedConnectionsPerUID = defaults.Or(l.MaxUnattestedConnectionsPerUID, DefaultMaxUnattestedConnectionsPerUID)
	l.RequestTimeout = defaults.OffIfNegative(l.RequestTimeout)
	l.MaxRequestBodyBytes = defaults.OffIfNegative(l.MaxRequestBodyBytes)
	return l
}

// limitError is a refusal caused by a limit. Its message says what was
// over which limit and names the YAML key that sets it.
type limitError struct {
	status int    // HTTP status to answer with
	what   string // "request header section is over 61440 bytes"
	key    string // YAML key
	value  string // the limit as it would be written in YAML
}

func (e *limitError) Error() string {
	if e.key == "" {
		return e.what
	}
	return fmt.Sprintf("%s (%s: %s)", e.what, e.key, e.value)
}

// message is the text a refused client gets.
func (e *limitError) message() string { return "procmesh: " + e.Error() + "\n" }

func headerBytesError(n int, limit int) *limitError {
	what := fmt.Sprintf("request header section is over %d bytes", limit)
	if n > 0 {
		what = fmt.Sprintf("request header section is %d bytes, over %d", n, limit)
	}
	return &limitError{status: http.StatusRequestHeaderFieldsTooLarge, what: what, key: keyRequestHeaderBytes, value: units.FormatSize(int64(limit))}
}

// responseHeaderCountError refuses an upstream response with more than
// max header fields (limits.max_response_headers).
func responseHeaderCountError(n, max int) *limitError {
	return &limitError{status: http.StatusBadGateway,
		what: fmt.Sprintf("upstream response has %d header fields, over %d", n, max),
		key:  keyResponseHeaders, value: strconv.Itoa(max)}
}

// streamIdleError ends a stream on which no byte moved for idle
// (limits.stream_idle_timeout); where says which stream: "on the
// request", "in the tunnel", "on the WebSocket". status is 0 once the
// client was answered.
func streamIdleError(status int, where string, idle time.Duration) *limitError {
	return &limitError{status: status, what: fmt.Sprintf("no byte moved %s for %s", where, idle),
		key: keyStreamIdleTimeout, value: units.FormatDuration(idle)}
}

func headerCountError(limit int) *limitError {
	return &limitError{
		status: http.StatusRequestHeaderFieldsTooLarge,
		what:   fmt.Sprintf("request has more than %d header fields", limit),
		key:    keyRequestHeaders, value: fmt.Sprint(limit),
	}
}

// requestHeaderSize measures a parsed request's header section the way the
// limits count it: pseudo-headers (method, target, authority) and every
// field's name and value, and the number of fields.
func requestHeaderSize(r *http.Request) (bytes, fields int) {
	bytes = len(r.Method) + len(r.RequestURI) + len(r.Host)
	for k, vv := range r.Header {
		for _, v := range vv {
			bytes += len(k) + len(v)
			fields++
		}
	}
	return bytes, fields
}
