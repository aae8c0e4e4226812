package tlsconf

import (
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"
)

// StoreOptions tunes a Store. The zero value is ready to use.
type StoreOptions struct {
	// MaxIdentities bounds the cached identities; the least recently used
	// is dropped beyond it. Default DefaultMaxIdentities (10000).
	MaxIdentities int
	// MinBackoff and MaxBackoff bound the wait between issuance attempts
	// after failures. Defaults DefaultMinBackoff (1s), DefaultMaxBackoff (1m).
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand returns a uniform number in [0, 1) for backoff jitter. It is
	// called with the Store's lock held. Default math/rand/v2.Float64.
	Rand func() float64
	// Logger receives issuance failures and recoveries. Default: no logging.
	Logger zerolog.Logger
	// JWT, when set, signs the JWT-SVIDs the Store hands out as a
	// JWTSource, and its keys are the JWT bundle. The caller owns it.
	// Default nil: JWTSVID fails, JWTBundles is empty.
	JWT *JWTKeys
}

// Defaults of StoreOptions.
const (
	DefaultMaxIdentities = 10000
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = time.Minute
)

func (o StoreOptions) withDefaults() StoreOptions {
	if o.MaxIdentities <= 0 {
		o.MaxIdentities = DefaultMaxIdentities
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	return o
}

// backoff returns how long to wait before the next issuance attempt after
// the nth consecutive failure (n >= 1), given r uniform in [0, 1).
//
// The ceiling doubles from 2·min per failure up to max, and the delay is
// uniform in [ceiling/2, ceiling): with the defaults 1–2s, 2–4s, 4–8s, …,
// then 30–60s for good. So delays never shrink from one failure to the
// next, stay within [min, max], and identities that failed together spread
// their retries apart.
func backoff(n int, minD, maxD time.Duration, r float64) time.Duration {
	ceiling := minD
	for i := 0; i < n && ceiling < maxD; i++ {
		ceiling *= 2
	}
	if ceiling > maxD {
		ceiling = maxD
	}
	half := ceiling / 2
	d := half + time.Duration(r*float64(ceiling-half))
	if d < minD {
		d = minD
	}
	if d > maxD {
		d = maxD
	}
	return d
}
