package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/admin"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/inbound"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/wlapi"
)

// cmdRun serves until SIGTERM or SIGINT, then drains in-flight work for up
// to -drain-timeout and exits 0 (THREATS F7).
func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs, path := newFlagSet("run", stderr)
	drain := fs.Duration("drain-timeout", 0, "how long SIGTERM waits for in-flight work (default: shutdown.drain_timeout, 30s)")
	cfg, code := parseAndLoad(fs, path, args, stderr)
	if cfg == nil {
		return code
	}
	out, err := openLog(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer out.Close() // after the last line: "procmesh stopped"
	log := out.logger(cfg.Log.Level)
	if *drain <= 0 {
		*drain = cfg.Shutdown.DrainTimeout
	}
	if err := serve(*path, cfg, *drain, log, out); err != nil {
		log.Error().Err(err).Msg("procmesh stopped")
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// running is a started node: its server, sockets and reloader.
type running struct {
	n        *node
	srv      *proxy.Server
	in       *inbound.Server // the inbound listeners (THREATS N1-N4)
	sockets  []*proxy.Socket
	reloader *reloader
	errc     chan error     // a Serve or ServeRaw that returned
	wl       *wlapi.Server  // nil: no listen.workload_api
	monitor  *admin.Monitor // nil: no admin listener
	admin    *admin.Server
}

// start builds the node for cfg, opens its sockets and serves them in the
// background. path is the config file, for reloads.
func start(path string, cfg *config.Config, log zerolog.Logger) (*running, error) {
	n, err := buildNode(cfg, log)
	if err != nil {
		return nil, err
	}
	mon := newMonitor(cfg, n)
	popts := proxyOptions(cfg, log)
	popts.Observer = observe(mon)
	srv, err := proxy.New(n.resolver, n.src, n.state, popts)
	if err != nil {
		n.Close()
		return nil, err
	}
	rn := &running{n: n, srv: srv, errc: make(chan error, 2+len(cfg.Routes)), monitor: mon}
	if err := rn.listen(cfg, log); err != nil {
		rn.stop(0)
		return nil, err
	}
	if rn.in, err = startInbound(cfg, n, mon, log); err != nil {
		rn.stop(0)
		return nil, err
	}
	rn.reloader = newReloader(path, n, srv, log)
	rn.reloader.in = rn.in
	rn.reloader.wl = rn.wl
	if mon != nil {
		rn.reloader.observe = mon.Reloaded
	}
	if err := rn.startAdmin(cfg, log); err != nil {
		rn.stop(0)
		return nil, err
	}
	return rn, nil
}

// listen opens the main socket and every route socket and serves them.
func (rn *running) listen(cfg *config.Config, log zerolog.Logger) error {
	gid, err := groupID(cfg.Listen.Group)
	if err != nil {
		return err
	}
	noteWorldConnectable(cfg, log)
	main, err := proxy.Listen(proxy.ListenOptions{Path: cfg.Listen.Socket, Mode: cfg.Listen.Mode, GID: gid})
	if err != nil {
		return err
	}
	rn.sockets = append(rn.sockets, main)
	go func() { rn.errc <- rn.srv.Serve(main) }()
	for _, r := range cfg.Routes {
		if r.Socket == "" {
			continue
		}
		s, err := proxy.Listen(proxy.ListenOptions{Path: r.Socket, Mode: r.SocketMode, GID: gid})
		if err != nil {
			return fmt.Errorf("route %q: %w", r.Name, err)
		}
		rn.sockets = append(rn.sockets, s)
		name := r.Name
		go func() { rn.errc <- rn.srv.ServeRaw(s, name) }()
	}
	return rn.serveWorkloadAPI(cfg, gid, log)
}

// stop drains for up to drain, then closes everything. It reports whether
// the drain deadline cut work short.
func (rn *running) stop(drain time.Duration) error {
	rn.stopWorkloadAPI(drain)
	inDone := make(chan error, 1)
	go func() {
		if rn.in == nil {
			inDone <- nil
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		inDone <- rn.in.Shutdown(ctx)
	}()
	err := errors.Join(shutdown(rn.srv, drain), <-inDone)
	rn.stopAdmin()
	for _, s := range rn.sockets {
		s.Close()
	}
	rn.n.Close()
	return err
}

// serve runs cfg until SIGTERM or SIGINT; SIGHUP and, if watching is on,
// a changed file reload it. SIGHUP also reopens the log file, for
// logrotate.
func serve(path string, cfg *config.Config, drain time.Duration, log zerolog.Logger, out *logOutput) error {
	applyRuntime(cfg.Runtime, log)
	// Signals are caught before the sockets serve: a SIGHUP (logrotate)
	// that comes once clients are served must reload, not kill procmesh
	// with the default action.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rn, err := start(path, cfg, log)
	if err != nil {
		return err
	}
	rn.reloader.flushLog = out.Flush
	releaseStartupMemory()
	var watchers sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer func() { stopWatch(); watchers.Wait() }()
	if cfg.Reload.Watch {
		watchers.Add(1)
		go func() { defer watchers.Done(); rn.reloader.watch(watchCtx, cfg.Reload.Debounce) }()
	}
	log.Info().Str("socket", cfg.Listen.Socket).Str("trust_domain", cfg.TrustDomain.String()).
		Int("routes", len(cfg.Routes)).Int("inbound", len(cfg.Inbound)).Int("workloads", len(cfg.Workloads)).Bool("watch_config", cfg.Reload.Watch).
		Str("version", version()).Msg("procmesh ready")
	notifySystemd("READY=1", log)

	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info().Dur("drain_timeout", drain).Msg("signal received; draining")
			notifySystemd("STOPPING=1", log)
			break loop
		case <-hup:
			// systemd shows the unit reloading until READY=1 (sd_notify(3)).
			notifySystemd(reloadingState(), log)
			if err := out.Reopen(); err != nil {
				log.Error().Err(err).Msg("log.file not reopened; logging to the file already open")
			}
			rn.reloader.reload("SIGHUP")
			notifySystemd("READY=1", log)
		case serveErr = <-rn.errc:
			break loop
		}
	}
	if err := rn.stop(drain); err != nil {
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

// startInbound opens cfg's inbound listeners; mon, when not nil, counts
// what they serve.
func startInbound(cfg *config.Config, n *node, mon *admin.Monitor, log zerolog.Logger) (*inbound.Server, error) {
	opts := inboundOptions(cfg, n, log)
	if mon != nil {
		opts.Observe = mon.Inbound
	}
	in, err := inbound.New(opts)
	if err != nil {
		return nil, err
	}
	ls, err := inboundListeners(cfg)
	if err != nil {
		return nil, err
	}
	if err := in.Apply(ls, cfg.Shutdown.DrainTimeout); err != nil {
		return nil, fmt.Errorf("procmesh: inbound: %w", err)
	}
	return in, nil
}
