package tlsconf

import (
	"context"

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
