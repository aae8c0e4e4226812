// Command procmesh-echo is the demo mTLS upstream that `make run` starts: a
// SPIFFE-authenticated HTTP and TCP echo server that answers with the
// SPIFFE ID of the client it verified. It has its own CA and trust domain
// (upstream.test by default), so the demo crosses trust domains the way a
// real upstream would.
//
// Usage:
//
//	procmesh-echo -state DIR -client-bundle TD=FILE [-client-bundle ...]
//	              -bundle-out FILE [-http ADDR] [-tcp ADDR]
//	              [-trust-domain TD] [-id SPIFFE-ID] [-h3] [-alt-svc]
//
// -h3 also serves the HTTP echo as HTTP/3 over QUIC, on UDP at the -http
// address; -alt-svc advertises that port in Alt-Svc, for routes with
// protocol auto.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/echo"
	"github.com/procmesh/procmesh/tlsconf"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// bundleFlags collects -client-bundle TD=FILE values.
type bundleFlags []tlsconf.BundleFile

func (b *bundleFlags) String() string { return fmt.Sprint(*b) }

func (b *bundleFlags) Set(v string) error {
	td, file, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want TRUST_DOMAIN=FILE")
	}
	t, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return err
	}
	*b = append(*b, tlsconf.BundleFile{TrustDomain: t, File: file})
	return nil
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("procmesh-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "", "directory for this upstream's own CA (created 0700)")
	tdName := fs.String("trust-domain", "upstream.test", "this upstream's trust domain")
	idStr := fs.String("id", "spiffe://upstream.test/echo", "SPIFFE ID this upstream presents")
	httpAddr := fs.String("http", "127.0.0.1:18443", "HTTP echo address (empty: off)")
	tcpAddr := fs.String("tcp", "127.0.0.1:18444", "TCP echo address (empty: off)")
	bundleOut := fs.String("bundle-out", "", "write this upstream's trust bundle (PEM) here once serving")
	h3 := fs.Bool("h3", false, "also serve HTTP/3 over QUIC on UDP at the -http address")
	altSvc := fs.Bool("alt-svc", false, "advertise HTTP/3 on the -http port in Alt-Svc")
	var clients bundleFlags
	fs.Var(&clients, "client-bundle", "TRUST_DOMAIN=FILE whose CAs may call this upstream (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *state == "" || len(clients) == 0 {
		fmt.Fprintln(stderr, "procmesh-echo: -state and at least one -client-bundle are required")
		return 2
	}
	h3opts := echo.Options{HTTP3: *h3, AdvertiseHTTP3: *altSvc}
	if err := serve(*state, *tdName, *idStr, *httpAddr, *tcpAddr, *bundleOut, clients, h3opts, stderr); err != nil {
		fmt.Fprintln(stderr, "procmesh-echo:", err)
		return 1
	}
	return 0
}

func serve(state, tdName, idStr, httpAddr, tcpAddr, bundleOut string, clients bundleFlags, h3 echo.Options, stderr io.Writer) error {
	log := zerolog.New(stderr).With().Timestamp().Str("component", "procmesh-echo").Logger()
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return fmt.Errorf("-trust-domain: %w", err)
	}
	id, err := spiffeid.FromString(idStr)
	if err != nil {
		return fmt.Errorf("-id: %w", err)
	}
	ca, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: td, StateDir: state, Logger: log})
	if err != nil {
		return err
	}
	clientBundles, err := tlsconf.LoadBundles(nil, clients)
	if err != nil {
		return err
	}
	store := tlsconf.NewStore(ca, clientBundles, tlsconf.StoreOptions{Logger: log})
	defer store.Close()

	var servers []*echo.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	for _, l := range []struct {
		addr string
		mode echo.Mode
	}{{httpAddr, echo.ModeHTTP}, {tcpAddr, echo.ModeTCP}} {
		if l.addr == "" {
			continue
		}
		o := echo.Options{Addr: l.addr, Mode: l.mode, SVID: store.SVIDSource(id), Bundles: clientBundles, Logger: log}
		if l.mode == echo.ModeHTTP {
			o.HTTP3, o.AdvertiseHTTP3 = h3.HTTP3, h3.AdvertiseHTTP3
		}
		s := echo.New(o)
		if err := s.Start(); err != nil {
			return err
		}
		servers = append(servers, s)
		log.Info().Str("addr", s.Addr()).Str("mode", string(l.mode)).Str("spiffe_id", id.String()).Msg("serving")
	}
	if bundleOut != "" {
		// Written whole, then renamed: a reader polling for the file never
		// sees half of it.
		tmp := bundleOut + ".tmp"
		if err := os.WriteFile(tmp, ca.BundlePEM(), 0o644); err != nil {
			return fmt.Errorf("-bundle-out: %w", err)
		}
		if err := os.Rename(tmp, bundleOut); err != nil {
			return fmt.Errorf("-bundle-out: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return nil
}
