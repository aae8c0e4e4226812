package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/attest/connrecord"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// node is everything procmesh runs, built from one config. It is the only
// place where the packages meet.
type node struct {
	cfg      *config.Config
	log      zerolog.Logger
	keys     *tlsconf.KeyPool
	ca       *tlsconf.CA
	bundles  *x509bundle.Set
	store    *tlsconf.Store // provider builtin
	jwtKeys  *tlsconf.JWTKeys
	spire    *spire.Source  // provider spire
	src      tlsconf.Source // store or spire
	att      *attest.Attestor
	reg      *registry.Registry
	records  *connrecord.Recorder // nil: no connect-time record
	resolver *workload.Resolver
	state    *proxy.State
}

// loadConfig loads and validates a config file, printing every error on its
// own line.
func loadConfig(path string, stderr io.Writer) (*config.Config, bool) {
	if path == "" {
		fmt.Fprintln(stderr, "procmesh: -config FILE is required")
		return nil, false
	}
	cfg, err := config.Load(path)
	if err != nil {
		printErrors(stderr, err)
		return nil, false
	}
	return cfg, true
}

// newFlagSet returns a command's flag set, with -config, writing its usage
// and errors to stderr.
func newFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs, fs.String("config", "/etc/procmesh/procmesh.yaml", "config file")
}

// parseAndLoad parses args and loads the config -config names. On failure
// it returns a nil config and the exit code: 2 for bad flags, 1 for a bad
// config.
func parseAndLoad(fs *flag.FlagSet, path *string, args []string, stderr io.Writer) (*config.Config, int) {
	if err := fs.Parse(args); err != nil {
		return nil, 2
	}
	cfg, ok := loadConfig(*path, stderr)
	if !ok {
		return nil, 1
	}
	return cfg, 0
}

// printErrors prints each error joined in err on its own line.
func printErrors(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			printErrors(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

// loadCA opens the built-in CA the config names, creating it at first
// start. keys, when not nil, supplies the keys of the SVIDs it mints.
func loadCA(cfg *config.Config, log zerolog.Logger, keys *tlsconf.KeyPool) (*tlsconf.CA, error) {
	return tlsconf.LoadOrCreateCA(tlsconf.CAOptions{
		TrustDomain: cfg.TrustDomain,
		StateDir:    cfg.Identity.StateDir,
		CertFile:    cfg.Identity.CA.Cert,
		KeyFile:     cfg.Identity.CA.Key,
		SVIDTTL:     cfg.Identity.SVIDTTL,
		Keys:        keys,
		Logger:      log,
	})
}

// buildNode builds every component from cfg. Close releases them.
func buildNode(cfg *config.Config, log zerolog.Logger) (*node, error) {
	n := &node{cfg: cfg, log: log}
	var err error
	n.att = attest.New(attestOptions(cfg, log))
	if err = n.buildSource(); err != nil {
		n.Close()
		return nil, err
	}
	if n.reg, err = buildRegistry(cfg); err != nil {
		n.Close()
		return nil, err
	}
	if n.state, err = buildState(cfg); err != nil {
		n.Close()
		return nil, err
	}
	if n.records, err = openRecords(cfg.Attest.ConnectRecord, log); err != nil {
		n.Close()
		return nil, err
	}
	wopts := workload.Options{
		MaxProcesses: cfg.Cache.MaxProcesses,
		TTL:          cfg.Cache.TTL,
		RatePerUID:   float64(cfg.Attest.RatePerUID),
		BurstPerUID:  cfg.Attest.BurstPerUID,
		Logger:       log,
	}
	if n.records != nil {
		wopts.Records = n.records
	}
	n.resolver, err = workload.New(n.att, n.reg, n.src, wopts)
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// attestOptions are the attestor's settings from cfg's attest section.
func attestOptions(cfg *config.Config, log zerolog.Logger) attest.Options {
	return attest.Options{
		HashSizeLimit:       cfg.Attest.HashSizeLimit,
		MaxConcurrentHashes: cfg.Attest.MaxConcurrentHashes,
		Logger:              log,
	}
}

// buildSource builds where SVIDs and trust bundles come from: the built-in
// CA, or the SPIRE agent (identity.provider: spire), whose bundles the
// trust_bundles files add to.
func (n *node) buildSource() error {
	cfg, log := n.cfg, n.log
	var err error
	if cfg.Identity.Provider == "spire" {
		if n.bundles, err = loadBundles(cfg, nil); err != nil {
			return err
		}
		n.spire, err = spire.New(spire.Options{
			AdminSocket:         cfg.Identity.SPIRE.AdminSocket,
			FirstMessageTimeout: cfg.Identity.SPIRE.FirstAnswerTimeout,
			MaxStreams:          cfg.Cache.MaxProcesses,
			Static:              n.bundles,
			Alive:               n.att.Alive,
			Logger:              log,
		})
		if err != nil {
			return err
		}
		n.src = n.spire
		return nil
	}
	// Keys for new identities' SVIDs are generated ahead of time, off the
	// path of the request that needs one.
	n.keys = tlsconf.NewKeyPool(tlsconf.KeyPoolOptions{Logger: log})
	if n.ca, err = loadCA(cfg, log, n.keys); err != nil {
		return err
	}
	if n.bundles, err = loadBundles(cfg, n.ca); err != nil {
		return err
	}
	// The JWT signing keys live next to the CA; the Store signs JWT-SVIDs
	// with them (routes' jwt_svid).
	n.jwtKeys, err = tlsconf.LoadOrCreateJWTKeys(tlsconf.JWTKeyOptions{
		TrustDomain: cfg.TrustDomain,
		StateDir:    cfg.Identity.StateDir,
		TTL:         cfg.Identity.JWTSVIDTTL,
		Rotation:    cfg.Identity.JWTKeyRotation,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	n.store = tlsconf.NewStore(n.ca, n.bundles, tlsconf.StoreOptions{Logger: log, JWT: n.jwtKeys})
	n.src = n.store
	return nil
}

// loadBundles reads the trust bundles the config names, plus the CA's own
// (ca is nil with the SPIRE provider).
func loadBundles(cfg *config.Config, ca *tlsconf.CA) (*x509bundle.Set, error) {
	files := make([]tlsconf.BundleFile, 0, len(cfg.TrustBundles))
	for _, tb := range cfg.TrustBundles {
		files = append(files, tlsconf.BundleFile{TrustDomain: tb.TrustDomain, File: tb.File})
	}
	var own *x509bundle.Bundle
	if ca != nil {
		own = ca.Bundle()
	}
	return tlsconf.LoadBundles(own, files)
}

// buildRegistry builds the registration entries. Policy rules match
// selectors too, so the registry is told each rule's set: attestation looks
// up user and group names only when an entry or a rule uses them, and
// hashes an executable only when an entry or a rule with unix:sha256 could
// match the process.
func buildRegistry(cfg *config.Config) (*registry.Registry, error) {
	opts := make([]registry.Option, 0, len(cfg.Policy.Rules))
	for _, r := range cfg.Policy.Rules {
		opts = append(opts, registry.AlsoMatched(r.Selectors...))
	}
	return registry.New(cfg.RegistryEntries(), opts...)
}

// buildPolicy builds the policy from cfg's rules, knowing each route's
// protocol. config.Load has already run the same policy.New (its errors
// come back there with FILE:LINE), so this fails only for a Config built in
// code.
func buildPolicy(cfg *config.Config) (*policy.Policy, error) {
	return policy.New(cfg.Policy.DefaultAllow(), cfg.PolicyRules(), policy.WithRouteProtocols(cfg.RouteProtocols()))
}

func buildState(cfg *config.Config) (*proxy.State, error) {
	routes := make([]proxy.Route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = proxy.Route{
			Name:              r.Name,
			Host:              r.Host,
			Upstream:          r.Upstream,
			ServerID:          r.ServerID,
			ServerTrustDomain: r.ServerTrustDomain,
			Protocol:          r.Protocol,
			ALPN:              strings.Join(r.ALPN, ","),
			Preconnect:        r.Preconnect,
		}
		if r.JWTSVID.On() {
			routes[i].JWTAudience = strings.Join(r.JWTSVID.Audience, " ")
			routes[i].JWTHeader = r.JWTSVID.Header
		}
	}
	pol, err := buildPolicy(cfg)
	if err != nil {
		return nil, err
	}
	return proxy.NewState(routes, pol)
}

// Close stops background work. It is safe on a partly built node.
func (n *node) Close() {
	if n.resolver != nil {
		n.resolver.Close()
	}
	if n.records != nil {
		n.records.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
	if n.spire != nil {
		n.spire.Close()
	}
	if n.keys != nil {
		n.keys.Close() // after the store: no Mint runs any more
	}
}

// openRecords loads the connect-time record as attest.connect_record asks
// (THREATS I11). Where it cannot be had and the mode is auto, procmesh
// says so once and attests from /proc alone.
func openRecords(mode string, log zerolog.Logger) (*connrecord.Recorder, error) {
	if mode == "off" {
		log.Warn().Msg("attest.connect_record is off: a process that execs another program after connect() is attested as that program (THREATS I11); README \"Threat model\" describes the window")
		return nil, nil
	}
	rec, err := connrecord.Open(connrecord.Options{})
	switch {
	case err == nil:
		log.Info().Str("cgroup", rec.CgroupRoot()).Msg("connect-time record on: every Unix-socket connect on the node is recorded at connect(); connections without a record are refused")
		return rec, nil
	case mode == "required":
		return nil, fmt.Errorf("attest.connect_record is required, but %w", err)
	default:
		log.Warn().Err(err).Msg("no connect-time record (attest.connect_record: auto): a process that execs another program between connect() and attestation is attested as that program (THREATS I11); set required to refuse to start without it")
		return nil, nil
	}
}
