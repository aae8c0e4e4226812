package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/procmesh/procmesh/proxy/internal/upstream"
	"golang.org/x/net/http/httpguts"
)

// runTransport serves a fast-path request to an http2, http3 or auto
// route: the client's HTTP/1.1 head and the response are read and written
// by the fast path as for http1 routes, the upstream leg is the pool's own
// transport (its connections, SVID and session cache). The stream timer,
// a reload and a client that hangs up end the round trip through its
// context.
func (x *exchange) runTransport(p *upstream.Pool) error {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	x.dl.setTransport(cancel)
	body := io.ReadCloser(http.NoBody)
	if x.r.ContentLength > 0 {
		body = x.body
	}
	out := outboundRequest(ctx, x.r, p.Host(), body, x.fc.srv.reqFilter.skip)
	x.fc.watch.start(x.dl, time.Now())
	res, err := p.Transport().RoundTrip(out)
	x.fc.watch.stop()
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if x.timer.cause.Load() != nil || x.body.failure() != nil {
		// The upstream answered a body procmesh cut short (a stalled or
		// broken client body, a limit): the client is told why.
		return errors.New("request body cut short")
	}
	if n, max := headerFields(res.Header), x.fc.srv.opts.MaxResponseHeaders; n > max {
		return responseHeaderCountError(n, max)
	}
	x.timer.touch()
	err = x.respond(res)
	x.timer.stop()
	return err
}

// outboundRequest is r as the transport sends it to host: origin path and
// query as normalised, the fields writeRequestHead would write (hop-by-hop,
// Connection-listed and client-sent Forwarded/X-Forwarded-* dropped, as
// httputil.ReverseProxy drops them on the net/http path, and those skip
// reports), and no User-Agent of the transport's own.
func outboundRequest(ctx context.Context, r *http.Request, host string, body io.ReadCloser, skip func(string) bool) *http.Request {
	h := make(http.Header, len(r.Header)+1)
	listed := connectionListed(r.Header)
	for k, vv := range r.Header {
		if !skip(k) && !contains(listed, k) {
			h[k] = vv
		}
	}
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		h["Te"] = []string{"trailers"}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""}
	}
	u := &url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath,
		RawQuery: r.URL.RawQuery, ForceQuery: r.URL.ForceQuery}
	out := &http.Request{Method: r.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: body, ContentLength: r.ContentLength}
	return out.WithContext(ctx)
}
