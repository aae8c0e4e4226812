package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// DefaultKeyPoolSize is how many keys a KeyPool holds ready when
// KeyPoolOptions.Size is 0: enough for a burst of new identities (a
// deployment rolling out, a cron job fanning out) without holding many
// unused private keys in memory.
const DefaultKeyPoolSize = 8

// keyPoolRetry is how long the refill goroutine waits after a failed key
// generation before it tries again.
const keyPoolRetry = time.Second

// KeyPoolOptions tunes a KeyPool. The zero value is ready to use.
type KeyPoolOptions struct {
	// Size is how many keys are kept ready. Default DefaultKeyPoolSize (8).
	Size int
	// Logger receives key generation failures (never keys). Default: no
	// logging.
	Logger zerolog.Logger
}

// KeyPool hands out fresh ECDSA P-256 keys generated ahead of time, so that
// minting an SVID for a new identity does not wait for key generation.
//
// One background goroutine keeps up to Size keys ready; Key takes one (each
// key is handed out once, never reused) and generates one inline when none
// is ready. The keys are in memory only, like the SVID keys themselves.
// Close stops the goroutine; Key keeps working after Close, generating
// inline once the ready keys are used up. It is safe for concurrent use.
type KeyPool struct {
	keys   chan *ecdsa.PrivateKey
	log    zerolog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// NewKeyPool starts a KeyPool's refill goroutine. Close stops it.
func NewKeyPool(opts KeyPoolOptions) *KeyPool {
	if opts.Size <= 0 {
		opts.Size = DefaultKeyPoolSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &KeyPool{
		keys:   make(chan *ecdsa.PrivateKey, opts.Size),
		log:    opts.Logger,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go p.refill(ctx)
	return p
}

// Key returns a key nobody else has been given. It never waits for the
// refill goroutine.
func (p *KeyPool) Key() (*ecdsa.PrivateKey, error) {
	select {
	case k := <-p.keys:
		return k, nil
	default:
		return generateKey()
	}
}

// Ready reports how many keys are waiting to be handed out.
func (p *KeyPool) Ready() int { return len(p.keys) }

// refill generates keys until ctx is done, blocking while the pool is full.
func (p *KeyPool) refill(ctx context.Context) {
	defer close(p.done)
	for {
		k, err := generateKey()
		if err != nil {
			p.log.Warn().Err(err).Dur("retry_in", keyPoolRetry).Msg("tlsconf: key pool: generation failed; SVID keys are generated when minting meanwhile")
			select {
			case <-time.After(keyPoolRetry):
				continue
			case <-ctx.Done():
				return
			}
		}
		select {
		case p.keys <- k:
		case <-ctx.Done():
			return
		}
	}
}

// Close stops the refill goroutine and waits for it. It is idempotent.
func (p *KeyPool) Close() error {
	p.once.Do(func() {
		p.cancel()
		<-p.done
	})
	return nil
}

// generateKey makes one SVID key: ECDSA P-256, as the X509-SVID profile
// procmesh mints.
func generateKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return k, nil
}
