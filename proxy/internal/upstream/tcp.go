package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// newTCPTransport returns the HTTP transport of a pool over TCP+TLS: the
// route's Upstream is dialled whatever the request's URL says, with the
// pool's TLS config (its SVID and its session cache).
//
// With h2only (route protocol http2) the transport speaks HTTP/2 and
// nothing else: the TLS handshake offers only h2 and a connection that did
// not negotiate it fails the request. Otherwise it speaks what conf offers:
// http/1.1 (http1 routes), or h2 with a fallback to http/1.1 (auto routes,
// where upgrade requests such as WebSocket ask for HTTP/1.1 alone).
//
// HTTP/2 runs on net/http's own implementation (golang.org/x/net/http2's
// Transport is deprecated in favour of it and takes the same settings
// through http.HTTP2Config): SETTINGS_MAX_CONCURRENT_STREAMS is honoured
// strictly, so one identity's requests to a route share one multiplexed
// connection and wait when the upstream says it has no room; response
// headers are bounded by MaxResponseHeaderBytes (SETTINGS_MAX_HEADER_LIST_SIZE,
// which also cuts a CONTINUATION flood short); idle connections are pinged
// to find dead ones.
func (ps *Pools) newTCPTransport(p *Pool, conf *tls.Config, h2only bool) *http.Transport {
	o := ps.opts
	upstream := p.route.Upstream
	tr := &http.Transport{
		MaxIdleConns:           o.MaxIdlePerPool,
		MaxIdleConnsPerHost:    o.MaxIdlePerPool,
		IdleConnTimeout:        o.IdleConnTimeout,
		ResponseHeaderTimeout:  o.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: int64(o.MaxResponseHeaderBytes),
		DisableCompression:     true,
		HTTP2: &http.HTTP2Config{
			StrictMaxConcurrentRequests: true,
			SendPingTimeout:             o.H2ReadIdleTimeout, // 0: off
			PingTimeout:                 o.H2PingTimeout,
		},
	}
	protos := new(http.Protocols)
	switch {
	case h2only:
		protos.SetHTTP2(true)
		tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := p.dialTLSWith(ctx, conf, nil)
			if err != nil {
				return nil, err
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != "h2" {
				c.Close()
				if got == "" {
					got = "none"
				}
				return nil, fmt.Errorf("upstream %s did not negotiate HTTP/2 (ALPN h2; it chose %s): route %q has protocol http2; use http1 or auto for this upstream", upstream, got, p.route.Name)
			}
			return c, nil
		}
	default:
		protos.SetHTTP1(true)
		for _, proto := range conf.NextProtos {
			if proto == "h2" {
				protos.SetHTTP2(true)
			}
		}
		// net/http adds its ALPN list to the config it is given: give it
		// its own copy, sharing the session cache.
		tr.TLSClientConfig = conf.Clone()
		tr.TLSHandshakeTimeout = o.DialTimeout
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialTCP(ctx, p.dialer, p.dials, upstream)
		}
	}
	tr.Protocols = protos
	return tr
}

// tcpErrors classifies the errors of net/http's HTTP/1.1 and HTTP/2
// transports: a response header section over the limit becomes a
// *HeaderLimitError (THREATS P8), recognised here, once, by the text of
// the transport that produces it (net/http keeps those errors
// unexported). HTTP/2 connection errors, which net/http reports as bare
// codes ("connection error: PROTOCOL_ERROR"), are explained: procmesh
// closed the connection because the upstream broke the protocol, most
// often by sending a header block over the limit (THREATS P5, P8).
type tcpErrors struct {
	*http.Transport
	maxHeader int
}

func (t tcpErrors) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.Transport.RoundTrip(req)
	if err == nil {
		return resp, nil
	}
	switch msg := err.Error(); {
	case strings.HasPrefix(msg, "connection error: "):
		err = &HeaderLimitError{Limit: t.maxHeader, err: fmt.Errorf(
			"HTTP/2 %w: procmesh closed the upstream connection (a response header block over %d bytes, or a malformed frame)", err, t.maxHeader)}
	case strings.Contains(msg, "server response headers exceeded"), // HTTP/1.1
		strings.Contains(msg, "response header list larger than advertised limit"): // HTTP/2
		err = &HeaderLimitError{Limit: t.maxHeader, err: err}
	}
	return resp, err
}
