package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// JWT-SVIDs attached to the requests of routes with a JWTAudience: one
// token per (SPIFFE ID, audience), fetched from the identity source once
// at a time per key, renewed in the background from half its lifetime on,
// and served until three quarters of it, so that a renewal that fails now
// and then never fails a request.

const (
	// jwtCacheSize bounds the cached tokens; the least recently used goes.
	jwtCacheSize = 4096
	// jwtFetchTimeout bounds one fetch from the identity source.
	jwtFetchTimeout = 10 * time.Second
)

var errNoJWTSource = errors.New("the identity source issues no JWT-SVIDs")

type jwtCacheKey struct {
	id  spiffeid.ID
	aud string // Route.JWTAudience
}

// jwtToken is a cached JWT-SVID, ready to attach.
type jwtToken struct {
	bearer  string // "Bearer <token>"
	token   string
	jtiHash string // for the audit line: sha256 of the jti claim, 6 bytes in hex
	renewAt time.Time
	useBy   time.Time
}

// value is what the route's header field carries.
func (t *jwtToken) value(header string) string {
	if header == "Authorization" {
		return t.bearer
	}
	return t.token
}

type jwtEntry struct {
	tok      *jwtToken     // last good token, possibly past useBy
	inflight chan struct{} // closed when the running fetch ends
	err      error         // the last fetch's error
}

// jwtCache holds the callers' JWT-SVIDs.
type jwtCache struct {
	src  tlsconf.JWTSource // nil: none
	base context.Context   // ends background fetches at shutdown
	log  zerolog.Logger
	now  func() time.Time

	mu sync.Mutex
	m  *simplelru.LRU[jwtCacheKey, *jwtEntry]
}

func newJWTCache(src tlsconf.JWTSource, base context.Context, log zerolog.Logger) *jwtCache {
	// NewLRU fails only for a size <= 0.
	m, _ := simplelru.NewLRU[jwtCacheKey, *jwtEntry](jwtCacheSize, nil)
	return &jwtCache{src: src, base: base, log: log, now: time.Now, m: m}
}

// token returns id's JWT-SVID for route's audience, fetching one if none
// is usable, and waiting for it until ctx ends.
func (c *jwtCache) token(ctx context.Context, id *workload.Identity, route *Route) (*jwtToken, error) {
	if c.src == nil {
		return nil, errNoJWTSource
	}
	w := tlsconf.Workload{ID: id.ID(), PID: id.Process.PID, Selectors: id.Process.Selectors}
	key := jwtCacheKey{id: w.ID, aud: route.JWTAudience}
	c.mu.Lock()
	e, ok := c.m.Get(key)
	if !ok {
		e = &jwtEntry{}
		c.m.Add(key, e)
	}
	now := c.now()
	if t := e.tok; t != nil && now.Before(t.useBy) {
		if !now.Before(t.renewAt) && e.inflight == nil {
			c.fetch(e, w, route.JWTAudience)
		}
		c.mu.Unlock()
		return t, nil
	}
	if e.inflight == nil {
		c.fetch(e, w, route.JWTAudience)
	}
	ch := e.inflight
	c.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a JWT-SVID: %w", ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := e.tok; t != nil && c.now().Before(t.useBy) {
		return t, nil
	}
	if e.err != nil {
		return nil, e.err
	}
	return nil, errors.New("the JWT-SVID fetched has already expired")
}

// fetch starts one fetch for e; c.mu is held.
func (c *jwtCache) fetch(e *jwtEntry, w tlsconf.Workload, aud string) {
	ch := make(chan struct{})
	e.inflight = ch
	go func() {
		ctx, cancel := context.WithTimeout(c.base, jwtFetchTimeout)
		defer cancel()
		svid, err := c.src.JWTSVID(ctx, w, strings.Split(aud, " "))
		var tok *jwtToken
		if err == nil {
			tok, err = c.check(svid, w.ID)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		defer close(ch)
		e.inflight = nil
		e.err = err
		if err != nil {
			ev := c.log.Warn()
			if e.tok == nil || !c.now().Before(e.tok.useBy) {
				ev = c.log.Error()
			}
			ev.Err(err).Str("spiffe_id", w.ID.String()).Int32("pid", w.PID).Str("audience", aud).Msg("JWT-SVID fetch failed")
			return
		}
		e.tok = tok
	}()
}

// check turns a source's answer into a cached token, refusing one that
// names another identity or is already past its use.
func (c *jwtCache) check(svid *jwtsvid.SVID, id spiffeid.ID) (*jwtToken, error) {
	switch {
	case svid == nil || svid.Marshal() == "":
		return nil, errors.New("the identity source returned no JWT-SVID")
	case svid.ID != id:
		return nil, fmt.Errorf("the identity source returned a JWT-SVID for %s, not %s", svid.ID, id)
	}
	now := c.now()
	life := svid.Expiry.Sub(now)
	if life <= 0 {
		return nil, fmt.Errorf("the identity source returned a JWT-SVID that expired at %s", svid.Expiry.Format(time.RFC3339))
	}
	token := svid.Marshal()
	return &jwtToken{
		bearer:  "Bearer " + token,
		token:   token,
		jtiHash: jtiHash(svid, token),
		renewAt: now.Add(life / 2),
		useBy:   now.Add(life * 3 / 4),
	}, nil
}

// jtiHash names a token in audit lines without being it: the first 6
// bytes of the sha256 of its jti claim (of the whole token when it has no
// jti), in hex.
func jtiHash(svid *jwtsvid.SVID, token string) string {
	src := token
	if jti, ok := svid.Claims["jti"].(string); ok && jti != "" {
		src = jti
	}
	sum := sha256.Sum256([]byte(src))
	return hex.EncodeToString(sum[:6])
}
