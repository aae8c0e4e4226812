package upstream

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http/httpguts"
)

// autoTransport is the transport of a pool whose route says protocol auto.
//
// It starts on TCP+TLS offering h2 and http/1.1 (HTTP/2 when the upstream
// negotiates it). When a response advertises h3 in Alt-Svc, on the route's
// own host (the alt-authority names no host, the route's Host, or the
// Upstream's host: procmesh never follows an upstream elsewhere, THREATS
// P4), it dials QUIC to the Upstream's host and the advertised port in the
// background; once that handshake succeeds, later requests go over HTTP/3
// until the advertisement's max age ("ma", default 24h) runs out or a
// response says "clear". Requests are never held up by the probe.
//
// If the probe or a later HTTP/3 dial fails, the route stays on (or goes
// back to) TCP for AltSvcBrokenBackoff and says so once in the log; a
// request whose HTTP/3 dial failed is sent again over TCP, which is safe
// because nothing of it was sent. A request that fails on an established
// HTTP/3 connection is not retried: it may have reached the upstream.
type autoTransport struct {
	route   string
	host    string // the route's Host
	upHost  string // host part of the route's Upstream
	tcp     http.RoundTripper
	h3      *h3Transport
	backoff time.Duration
	log     zerolog.Logger
	now     func() time.Time

	mu          sync.Mutex
	alt         string    // host:port of the advertised h3 endpoint; "" none
	altExpires  time.Time // end of the advertisement's max age
	state       h3State
	brokenUntil time.Time
	stopped     bool
	cancelProbe context.CancelFunc
	probes      sync.WaitGroup
}

type h3State int

const (
	h3Unknown h3State = iota // not tried, or given up until brokenUntil
	h3Probing                // a QUIC handshake is under way in the background
	h3Ready                  // requests go over HTTP/3
)

func newAutoTransport(route *Route, tcp http.RoundTripper, h3 *h3Transport, backoff time.Duration, log zerolog.Logger) *autoTransport {
	upHost, _, err := net.SplitHostPort(route.Upstream)
	if err != nil {
		upHost = route.Upstream
	}
	return &autoTransport{
		route: route.Name, host: NormalHost(route.Host), upHost: upHost,
		tcp: tcp, h3: h3, backoff: backoff, log: log, now: time.Now,
	}
}

func (a *autoTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Upgrades (WebSocket) exist in HTTP/1.1 only.
	if !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "Upgrade") && a.useH3() {
		resp, err := a.roundTripH3(req)
		if err == nil {
			a.learn(resp)
			return resp, nil
		}
		if resp, err, retried := a.retryOnTCP(req, err); retried {
			return resp, err
		}
		return nil, err
	}
	resp, err := a.tcp.RoundTrip(req)
	if err == nil {
		a.learn(resp)
	}
	return resp, err
}

// roundTripH3 sends req over HTTP/3 holding its body back, so that a dial
// failure leaves the body for a retry on TCP.
func (a *autoTransport) roundTripH3(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return a.h3.RoundTrip(req)
	}
	r := req.WithContext(req.Context())
	held := &heldBody{rc: req.Body}
	r.Body = held
	return a.h3.RoundTrip(r)
}

// retryOnTCP falls back when HTTP/3 could not be reached at all.
func (a *autoTransport) retryOnTCP(req *http.Request, h3err error) (*http.Response, error, bool) {
	if !isDialError(h3err) || req.Context().Err() != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, nil, false
	}
	a.markBroken(h3err)
	resp, err := a.tcp.RoundTrip(req)
	if err == nil {
		a.learn(resp)
	}
	return resp, err, true
}

// useH3 reports whether the next request goes over HTTP/3, and starts a
// probe when an advertised alternative has not been tried yet.
func (a *autoTransport) useH3() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.alt != "" && !now.Before(a.altExpires) {
		a.forgetLocked()
	}
	if a.state == h3Ready {
		return true
	}
	a.maybeProbeLocked(now)
	return false
}

// learn reads the Alt-Svc of a response.
func (a *autoTransport) learn(resp *http.Response) {
	lines := resp.Header.Values("Alt-Svc")
	if len(lines) == 0 {
		return
	}
	alts, clear, err := parseAltSvc(lines)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil:
		a.log.Debug().Err(err).Msg("ignoring the upstream's Alt-Svc")
		return
	case clear:
		a.forgetLocked()
		return
	}
	for _, alt := range alts {
		if alt.proto != "h3" || !a.sameHost(alt.host) {
			continue
		}
		if alt.maxAge <= 0 {
			a.forgetLocked()
			return
		}
		addr := net.JoinHostPort(a.upHost, strconv.Itoa(alt.port))
		if addr != a.alt {
			a.forgetLocked()
			a.alt = addr
			a.h3.setTarget(addr)
		}
		a.altExpires = a.now().Add(alt.maxAge)
		a.maybeProbeLocked(a.now())
		return
	}
}

func (a *autoTransport) sameHost(h string) bool {
	h = NormalHost(h)
	return h == "" || h == a.host || strings.EqualFold(h, NormalHost(a.upHost))
}

// forgetLocked drops the alternative and goes back to TCP.
func (a *autoTransport) forgetLocked() {
	if a.state == h3Ready {
		a.log.Info().Msg("auto route back on TCP: the upstream's HTTP/3 advertisement expired or was cleared")
	}
	a.alt, a.state = "", h3Unknown
	if a.cancelProbe != nil {
		a.cancelProbe()
		a.cancelProbe = nil
	}
	a.h3.rotate()
}

func (a *autoTransport) maybeProbeLocked(now time.Time) {
	if a.stopped || a.alt == "" || a.state != h3Unknown || now.Before(a.brokenUntil) {
		return
	}
	a.state = h3Probing
	ctx, cancel := context.WithCancel(context.Background())
	a.cancelProbe = cancel
	target := a.alt
	a.probes.Add(1)
	go func() {
		defer a.probes.Done()
		defer cancel()
		c, err := a.h3.dialQUIC(ctx, target, nil, nil)
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.state != h3Probing || a.alt != target || a.stopped {
			if c != nil {
				c.CloseWithError(0, "")
			}
			return
		}
		a.cancelProbe = nil
		if err != nil {
			a.markBrokenLocked(err)
			return
		}
		a.h3.prepare(target, c)
		a.state = h3Ready
		a.log.Info().Str("h3", target).Msg("auto route moved to HTTP/3 after the upstream advertised it")
	}()
}

func (a *autoTransport) markBroken(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.markBrokenLocked(err)
}

// markBrokenLocked sends requests over TCP for the back-off period and logs
// it once per failure.
func (a *autoTransport) markBrokenLocked(err error) {
	if a.now().Before(a.brokenUntil) {
		return
	}
	a.state = h3Unknown
	a.brokenUntil = a.now().Add(a.backoff)
	a.h3.rotate()
	a.log.Warn().Err(err).Str("h3", a.alt).Dur("backoff", a.backoff).
		Msg("HTTP/3 to the upstream failed; auto route stays on TCP (h2 or HTTP/1.1) for the back-off period")
}

// stop cancels a probe under way, waits for it, and keeps new ones from
// starting.
func (a *autoTransport) stop() {
	a.mu.Lock()
	a.stopped = true
	if a.cancelProbe != nil {
		a.cancelProbe()
	}
	a.mu.Unlock()
	a.probes.Wait()
}
