package tlsconf

import (
	"context"
	"errors"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// JWTSource issues JWT-SVIDs for workloads and holds the JWT bundles that
// validate them. The builtin CA signs them with its own JWT key (under
// state_dir); package spire asks the agent's Delegated Identity API by PID.
// A Source that can issue JWT-SVIDs implements it too.
type JWTSource interface {
	// JWTSVID returns a JWT-SVID naming w.ID for audience (at least one
	// entry; the first is the primary audience). The token is fresh
	// enough to be sent at once; callers cache by (identity, audience)
	// and ask again at half-life.
	JWTSVID(ctx context.Context, w Workload, audience []string) (*jwtsvid.SVID, error)
	// JWTBundles returns the current JWT bundles (signing keys by trust
	// domain), the local trust domain's included. The returned set must
	// not be modified; a rotation replaces it.
	JWTBundles() *jwtbundle.Set
}

var _ JWTSource = (*Store)(nil)

// JWTSVID signs a JWT-SVID for w.ID with the Store's JWT keys
// (StoreOptions.JWT). The Store keeps no cache of tokens: each call signs
// a fresh one, with its own jti.
func (s *Store) JWTSVID(ctx context.Context, w Workload, audience []string) (*jwtsvid.SVID, error) {
	if err := checkWorkload(w); err != nil {
		return nil, err
	}
	if s.opts.JWT == nil {
		return nil, errors.New("tlsconf: this SVID store has no JWT signing key")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errStoreClosed
	}
	return s.opts.JWT.Sign(w.ID, audience)
}

// JWTBundles returns the JWT keys' bundle set (empty without StoreOptions.JWT).
func (s *Store) JWTBundles() *jwtbundle.Set {
	if s.opts.JWT == nil {
		return jwtbundle.NewSet()
	}
	return s.opts.JWT.Bundles()
}
