package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/proxy"
)

// cmdRun serves until SIGTERM or SIGINT, then drains in-flight work for up
// to -drain-timeout and exits 0 (THREATS F7).
func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/procmesh/procmesh.yaml", "config file")
	drain := fs.Duration("drain-timeout", 30*time.Second, "how long SIGTERM waits for in-flight requests and connections")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return 1
	}
	log, closer, err := newLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer closer.Close()
	if err := serve(cfg, *drain, log); err != nil {
		log.Error().Err(err).Msg("procmesh stopped")
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func serve(cfg *config.Config, drain time.Duration, log zerolog.Logger) error {
	n, err := buildNode(cfg, log)
	if err != nil {
		return err
	}
	defer n.Close()
	srv, err := proxy.New(proxy.Options{
		Resolver:   n.resolver,
		Identities: n.store,
		Logger:     log,
		Audit:      log.Level(zerolog.InfoLevel).With().Str("log", "audit").Logger(),
	}, n.state)
	if err != nil {
		return err
	}
	gid, err := groupID(cfg.Listen.Group)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	errc := make(chan error, 1+len(cfg.Routes))
	var sockets []*proxy.Socket
	defer func() {
		for _, s := range sockets {
			s.Close()
		}
	}()
	main, err := proxy.Listen(proxy.ListenOptions{Path: cfg.Listen.Socket, Mode: cfg.Listen.Mode, GID: gid})
	if err != nil {
		return err
	}
	sockets = append(sockets, main)
	go func() { errc <- srv.Serve(main) }()
	for _, r := range cfg.Routes {
		if r.Socket == "" {
			continue
		}
		mode := r.SocketMode
		if mode == 0 {
			mode = cfg.Listen.Mode
		}
		s, err := proxy.Listen(proxy.ListenOptions{Path: r.Socket, Mode: mode, GID: gid})
		if err != nil {
			shutdown(srv, drain)
			return fmt.Errorf("route %q: %w", r.Name, err)
		}
		sockets = append(sockets, s)
		name := r.Name
		go func() { errc <- srv.ServeRaw(s, name) }()
	}
	log.Info().Str("socket", cfg.Listen.Socket).Str("trust_domain", cfg.TrustDomain.String()).
		Int("routes", len(cfg.Routes)).Int("workloads", len(cfg.Workloads)).Str("version", version()).
		Msg("procmesh ready")

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info().Dur("drain_timeout", drain).Msg("signal received; draining")
	case serveErr = <-errc:
	}
	if err := shutdown(srv, drain); err != nil {
		log.Warn().Err(err).Msg("drain deadline passed; remaining connections closed")
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	log.Info().Msg("procmesh stopped")
	return nil
}

func shutdown(srv *proxy.Server, drain time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	return srv.Shutdown(ctx)
}

// groupID resolves listen.group to a gid; "" keeps procmesh's own (-1).
func groupID(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(name); err == nil {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("procmesh: listen.group %q: %w; create the group or name an existing one", name, err)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("procmesh: listen.group %q has non-numeric gid %q", name, g.Gid)
	}
	return id, nil
}
