package load

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// H2Transport is the direct client for the HTTP/2 ceiling: net/http over
// TLS with ALPN h2 to addr (the URL's host is only the SNI and :authority).
func H2Transport(addr string, cfg *tls.Config) *http.Transport {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	p := new(http.Protocols)
	p.SetHTTP2(true)
	var d net.Dialer
	return &http.Transport{
		TLSClientConfig:     cfg,
		Protocols:           p,
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}

// H3Transport is the direct client for the HTTP/3 ceiling: quic-go's http3
// to addr (UDP).
func H3Transport(addr string, cfg *tls.Config) *http3.Transport {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{http3.NextProtoH3}
	return &http3.Transport{
		TLSClientConfig: cfg,
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, qcfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, addr, tlsCfg, qcfg)
		},
	}
}

// HTTPClosed is a closed loop of Workers goroutines sending GET url through
// rt, for the HTTP/2 and HTTP/3 direct ceilings (streams multiplexed on the
// client's own connections).
type HTTPClosed struct {
	RoundTripper http.RoundTripper
	URL          string
	Workers      int
	Warmup       time.Duration
	Duration     time.Duration
}

// Run runs the loop.
func (h HTTPClosed) Run(ctx context.Context) ClosedResult {
	req, err := http.NewRequest(http.MethodGet, h.URL, nil)
	if err != nil {
		return ClosedResult{Errors: 1, FirstErr: err.Error()}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req = req.WithContext(ctx)
	var counting atomic.Bool
	var done, all atomic.Int64
	errs := &errCounter{}
	var wg sync.WaitGroup
	for range h.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := h.RoundTripper.RoundTrip(req)
				if err != nil {
					if ctx.Err() == nil {
						errs.add(err)
						sleepCtx(ctx, 10*time.Millisecond)
					}
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					if ctx.Err() == nil {
						errs.add(err)
					}
				case resp.StatusCode != http.StatusOK:
					errs.add(fmt.Errorf("load: HTTP status %d", resp.StatusCode))
				default:
					all.Add(1)
					if counting.Load() {
						done.Add(1)
					}
				}
			}
		}()
	}
	elapsed := measure(ctx, h.Warmup, h.Duration, &counting)
	n := done.Load()
	cancel()
	wg.Wait()
	return ClosedResult{Requests: n, All: all.Load(), Errors: errs.n.Load(), Elapsed: elapsed, FirstErr: errs.firstErr()}
}
