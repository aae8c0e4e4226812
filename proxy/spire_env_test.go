package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"io"
	"testing"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/internal/spiretest"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// newSPIREEnv is newEnv with SPIRE as the identity source: a real SPIRE
// server and agent, procmesh's spire.Source over the agent's admin socket,
// no registration entries of procmesh's own, and an upstream that trusts
// only SPIRE's bundle (so every request it records carried a
// SPIRE-issued SVID).
func newSPIREEnv(t *testing.T, o envOptions, so spire.Options) (*env, *spiretest.SPIRE, *spire.Source) {
	t.Helper()
	sp := spiretest.Start(t, spiretest.Options{})
	e := newEnvDir(t, "procmesh-proxy-spire-")
	dir := e.dir
	e.upCA = mustCA(t, upstreamTD, filepath.Join(dir, "upstate"))
	upStore := tlsconf.NewStore(e.upCA, x509bundle.NewSet(e.upCA.Bundle()), tlsconf.StoreOptions{})
	t.Cleanup(func() { upStore.Close() })

	att := attest.New(attest.Options{})
	so.AdminSocket = sp.AdminSocket
	so.Alive = att.Alive
	so.Static = x509bundle.NewSet(e.upCA.Bundle())
	so.Logger = zerolog.New(e.audit)
	src, err := spire.New(so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	e.echo = startEcho(t, "http", upStore.SVIDSource(echoID), src.Bundles())
	e.raw = startEcho(t, "tcp", upStore.SVIDSource(echoID), src.Bundles())

	reg, err := registry.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var wopts workload.Options
	if o.records {
		rec, err := connrecord.Open(connrecord.Options{})
		if err != nil {
			t.Fatalf("connect-time record: %v", err)
		}
		t.Cleanup(func() { rec.Close() })
		wopts.Records = rec
	}
	e.resolver, err = workload.New(att, reg, src, wopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.resolver.Close() })
	e.srv, err = proxy.New(e.resolver, src, e.state(o.rules, true, echoID), proxy.Options{Audit: zerolog.New(e.audit)})
	if err != nil {
		t.Fatal(err)
	}
	e.hold = o.hold
	e.serve(e.srv, e.sock, e.rawSock)
	return e, sp, src
}

// runSPIRELoad is the "load" client: PM_C workers, each making requests
// to PM_URL on a new connection every time (so every request is resolved
// anew) until stdin reaches EOF; one JSON line per response.
func runSPIRELoad() error {
	sock, target := os.Getenv("PM_SOCK"), os.Getenv("PM_URL")
	workers := 4
	fmt.Sscan(os.Getenv("PM_C"), &workers)
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	emit := func(r clientResult) { mu.Lock(); out.Encode(r); mu.Unlock() }
	fmt.Fprintln(os.Stderr, "load: started")
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(target)
				if err != nil {
					emit(clientResult{Err: err.Error()})
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				emit(clientResult{Status: resp.StatusCode, Body: string(b)})
			}
		}()
	}
	wg.Wait()
	return nil
}
