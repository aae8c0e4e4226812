package spire

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	delegatedidentityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// Options configure a Source.
type Options struct {
	// AdminSocket is the path of the agent's admin socket
	// (admin_socket_path in its config). Required.
	AdminSocket string
	// FirstMessageTimeout bounds the wait for the agent's first answer
	// about a new process. Default 5s.
	FirstMessageTimeout time.Duration
	// Static are trust bundles added to SPIRE's (trust_bundles: in the
	// config, for upstreams outside SPIRE). Nil: none.
	Static *x509bundle.Set
	// Alive reports whether the process fp still runs the same image
	// ((*attest.Attestor).Alive). Required.
	Alive func(attest.Fingerprint) bool
	// MaxStreams bounds the processes with a stream at once (each costs
	// the agent a subscription and procmesh a goroutine pair): a process
	// beyond it is refused until others exit. Default 10000.
	MaxStreams int
	// BackoffMin and BackoffMax bound the wait before a stream
	// re-subscribes after an error (doubling, with jitter). Defaults 200ms
	// and 5s.
	BackoffMin, BackoffMax time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives stream events. Default: no logging.
	Logger zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.FirstMessageTimeout <= 0 {
		o.FirstMessageTimeout = 5 * time.Second
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 10000
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 200 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(5*time.Second, o.BackoffMin)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Static == nil {
		o.Static = x509bundle.NewSet()
	}
	return o
}

// Source is a tlsconf.Source and workload.Provider over a SPIRE agent's
// Delegated Identity API. It is safe for concurrent use.
type Source struct {
	opts   Options
	conn   *grpc.ClientConn
	client delegatedidentityv1.DelegatedIdentityClient
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	procs  map[procKey]*proc
	svids  map[spiffeid.ID]*x509svid.SVID // newest per ID, from any stream
	agent  agentState
	closed bool

	// beforeSubscribe, set by tests only, runs before each subscription;
	// beforeFetchJWT before each FetchJWTSVIDs call.
	beforeSubscribe func(attest.Fingerprint)
	beforeFetchJWT  func(attest.Fingerprint)

	bundles     bundleView
	jwtBundles  jwtBundlePointer // SPIRE's JWT bundles, replaced at each update
	bundleReady chan struct{}
	bundleOnce  sync.Once
}

var (
	_ tlsconf.Source    = (*Source)(nil)
	_ workload.Provider = (*Source)(nil)
)

// New dials the agent's admin socket (lazily: it may come up later) and
// starts the bundle subscription. It waits up to FirstMessageTimeout for
// the first bundles and logs a warning when they do not come.
func New(opts Options) (*Source, error) {
	opts = opts.withDefaults()
	if opts.AdminSocket == "" {
		return nil, errors.New("spire: no admin socket path")
	}
	if opts.Alive == nil {
		return nil, errors.New("spire: Options.Alive is required")
	}
	conn, err := grpc.NewClient("unix://"+opts.AdminSocket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Bundles with many federated trust domains are large.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
	if err != nil {
		return nil, fmt.Errorf("spire: admin socket %s: %w", opts.AdminSocket, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{
		opts:        opts,
		conn:        conn,
		client:      delegatedidentityv1.NewDelegatedIdentityClient(conn),
		ctx:         ctx,
		cancel:      cancel,
		procs:       make(map[procKey]*proc),
		svids:       make(map[spiffeid.ID]*x509svid.SVID),
		bundleReady: make(chan struct{}),
	}
	s.bundles.static = opts.Static
	s.bundles.set(x509bundle.NewSet())
	s.jwtBundles.Store(jwtbundle.NewSet())
	s.wg.Add(2)
	go s.bundleLoop()
	go s.jwtBundleLoop()
	t := time.NewTimer(opts.FirstMessageTimeout)
	defer t.Stop()
	select {
	case <-s.bundleReady:
	case <-t.C:
		opts.Logger.Warn().Str("admin_socket", opts.AdminSocket).Dur("waited", opts.FirstMessageTimeout).
			Msg("no trust bundle from the SPIRE agent yet: upstream handshakes fail until it answers")
	}
	return s, nil
}

// Name describes the agent for refusals.
func (s *Source) Name() string { return "the SPIRE agent at " + s.opts.AdminSocket }

// SVID returns the newest SVID SPIRE issued for w.ID, if still valid.
func (s *Source) SVID(_ context.Context, w tlsconf.Workload) (*x509svid.SVID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.svids[w.ID]
	if sv == nil {
		return nil, fmt.Errorf("spire: no SVID for %s from %s: %s", w.ID, s.Name(), s.agentErr())
	}
	if !s.opts.Now().Before(sv.Certificates[0].NotAfter) {
		return nil, s.expired(w.ID, sv.Certificates[0].NotAfter)
	}
	return sv, nil
}

// Bundles returns SPIRE's trust bundles plus the static ones; a bundle
// update replaces them atomically.
func (s *Source) Bundles() x509bundle.Source { return &s.bundles }

// Close cancels every stream and waits for them. It is idempotent.
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return s.conn.Close()
}
