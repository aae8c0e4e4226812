package spire

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	delegatedidentityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/tlsconf"
)

// JWT-SVIDs by PID (FetchJWTSVIDs) and the JWT bundles
// (SubscribeToJWTBundles), the JWTSource side of the Source.

var _ tlsconf.JWTSource = (*Source)(nil)

// JWTSVID asks the agent for a JWT-SVID for the process w.PID, which must
// be a process the Source tracks (it has a stream, pinned by a pidfd) and
// whose identity is w.ID. As on the X.509 path, SPIRE attests the PID
// when the call arrives, so the answer is used only if the process is
// still the one procmesh fingerprinted once it came: a process that
// exited (its PID perhaps reused) or exec'd gets no token (THREATS I14).
func (s *Source) JWTSVID(ctx context.Context, w tlsconf.Workload, audience []string) (*jwtsvid.SVID, error) {
	if len(audience) == 0 {
		return nil, errors.New("spire: a JWT-SVID needs at least one audience")
	}
	p, err := s.tracked(w)
	if err != nil {
		return nil, err
	}
	if p.pin.Exited() || !s.opts.Alive(p.fp) {
		return nil, fmt.Errorf("spire: process %d exited or changed: %w", w.PID, attest.ErrPeerGone)
	}
	if s.beforeFetchJWT != nil {
		s.beforeFetchJWT(p.fp)
	}
	resp, err := s.client.FetchJWTSVIDs(ctx, &delegatedidentityv1.FetchJWTSVIDsRequest{Audience: audience, Pid: w.PID})
	if err != nil {
		return nil, fmt.Errorf("spire: JWT-SVID for process %d from %s: %w", w.PID, s.Name(), describe(err))
	}
	if p.pin.Exited() || !s.opts.Alive(p.fp) {
		s.opts.Logger.Debug().Int32("pid", w.PID).Msg("discarded a SPIRE JWT-SVID: the process exited or changed")
		return nil, fmt.Errorf("spire: process %d exited or changed while its JWT-SVID was fetched: %w", w.PID, attest.ErrPeerGone)
	}
	var found *jwtsvid.SVID
	var ids []string
	for _, sv := range resp.Svids {
		parsed, err := jwtsvid.ParseInsecure(sv.GetToken(), audience[:1])
		if err != nil {
			return nil, fmt.Errorf("spire: the agent sent a JWT-SVID procmesh cannot use: %w", err)
		}
		ids = append(ids, parsed.ID.String())
		if parsed.ID == w.ID {
			found = parsed
		}
	}
	switch {
	case len(ids) > 1:
		return nil, fmt.Errorf("spire: %s issued %d JWT-SVIDs for process %d (%s), and procmesh acts as exactly one identity: make the SPIRE entries' selectors exclusive",
			s.Name(), len(ids), w.PID, strings.Join(ids, ", "))
	case found == nil && len(ids) == 1:
		return nil, fmt.Errorf("spire: %s issued a JWT-SVID for %s to process %d, which procmesh knows as %s", s.Name(), ids[0], w.PID, w.ID)
	case found == nil:
		return nil, fmt.Errorf("spire: %s issued no JWT-SVID for process %d: no SPIRE registration entry matches it", s.Name(), w.PID)
	}
	return found, nil
}

// tracked returns the process w names if the Source has a live stream for
// it whose identity is w.ID.
func (s *Source) tracked(w tlsconf.Workload) (*proc, error) {
	s.mu.Lock()
	var p *proc
	for k, q := range s.procs {
		if k.pid == w.PID && !q.gone {
			p = q
			break
		}
	}
	s.mu.Unlock()
	if p == nil || w.PID == 0 {
		return nil, fmt.Errorf("spire: process %d has no stream (it exited, or was never attested): %w", w.PID, attest.ErrPeerGone)
	}
	id, err := s.current(p)
	if err != nil {
		return nil, err
	}
	if id != w.ID {
		return nil, fmt.Errorf("spire: process %d is %s, not %s", w.PID, id, w.ID)
	}
	return p, nil
}

// JWTBundles returns the JWT bundles SPIRE last sent (empty before the
// first answer); each update replaces the set.
func (s *Source) JWTBundles() *jwtbundle.Set { return s.jwtBundles.Load() }

// jwtBundleLoop keeps the JWT bundle subscription up until the Source
// closes.
func (s *Source) jwtBundleLoop() {
	defer s.wg.Done()
	s.keepSubscribed(s.subscribeJWTBundles, func(err error) {
		s.opts.Logger.Debug().Err(err).Msg("SPIRE JWT bundle stream ended; re-subscribing")
	})
}

func (s *Source) subscribeJWTBundles() (bool, error) {
	stream, err := s.client.SubscribeToJWTBundles(s.ctx, &delegatedidentityv1.SubscribeToJWTBundlesRequest{})
	if err != nil {
		return false, describe(err)
	}
	return receive(stream, func(resp *delegatedidentityv1.SubscribeToJWTBundlesResponse) bool {
		set, err := jwtBundleSet(resp.Bundles)
		if err != nil {
			s.opts.Logger.Error().Err(err).Msg("ignored a JWT bundle update from the SPIRE agent")
			return false
		}
		s.jwtBundles.Store(set)
		s.opts.Logger.Debug().Int("trust_domains", set.Len()).Msg("JWT bundles from the SPIRE agent")
		return true
	})
}

// jwtBundleSet builds the JWT bundle set of one update: a JWKS per trust
// domain, keyed by the trust domain's name or SPIFFE ID.
func jwtBundleSet(m map[string][]byte) (*jwtbundle.Set, error) {
	set := jwtbundle.NewSet()
	for name, jwks := range m {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("spire: JWT bundle for %q: %w", name, err)
		}
		b, err := jwtbundle.Parse(td, jwks)
		if err != nil {
			return nil, fmt.Errorf("spire: JWT bundle for %s: %w", td, err)
		}
		set.Add(b)
	}
	return set, nil
}

// jwtBundlePointer holds the current JWT bundle set.
type jwtBundlePointer = atomic.Pointer[jwtbundle.Set]
