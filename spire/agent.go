package spire

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// agentState is what procmesh knows of the agent's availability.
type agentState struct {
	lastErr   error
	downSince time.Time // zero while streams succeed
}

// expired is the error for an identity whose last SVID has expired. s.mu
// is held.
func (s *Source) expired(id spiffeid.ID, at time.Time) error {
	return fmt.Errorf("spire: the SVID of %s from %s expired at %s and no newer one came: %s",
		id, s.Name(), at.UTC().Format(time.RFC3339), s.agentErr())
}

// agentErr describes the agent's state. s.mu is held.
func (s *Source) agentErr() string {
	if s.agent.downSince.IsZero() {
		return "the agent is reachable"
	}
	return fmt.Sprintf("the agent has been unreachable since %s: %v", s.agent.downSince.UTC().Format(time.RFC3339), s.agent.lastErr)
}

// backoff returns the wait before attempt n (0-based): doubling from
// BackoffMin up to BackoffMax, a random point in its upper half, so that
// many streams cut at once by an agent restart do not come back at once.
func (s *Source) backoff(n int) time.Duration {
	d := s.opts.BackoffMin
	for i := 0; i < n && d < s.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.opts.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// agentUp records that a stream got an answer.
func (s *Source) agentUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.agent.downSince.IsZero() {
		s.opts.Logger.Info().Str("admin_socket", s.opts.AdminSocket).
			Dur("down_for", s.opts.Now().Sub(s.agent.downSince)).Msg("SPIRE agent answers again")
	}
	s.agent = agentState{}
}

// agentDown records a stream error.
func (s *Source) agentDown(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.agent.downSince.IsZero() {
		s.agent.downSince = s.opts.Now()
		s.opts.Logger.Warn().Err(err).Str("admin_socket", s.opts.AdminSocket).
			Msg("SPIRE agent stream failed: still-valid SVIDs keep serving; re-subscribing with backoff")
	}
	s.agent.lastErr = err
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// describe turns a stream error into one an operator can act on.
func describe(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.PermissionDenied:
		return fmt.Errorf("the agent refused procmesh as a delegate (%s): procmesh needs a SPIRE registration entry whose SPIFFE ID is in the agent's authorized_delegates (README \"SPIRE as the identity source\")", st.Message())
	case codes.Unavailable:
		return fmt.Errorf("the agent is unavailable: %s", st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("the agent has no Delegated Identity API (%s): SPIRE 1.10.2 or later with admin_socket_path set is needed", st.Message())
	case codes.InvalidArgument:
		return fmt.Errorf("the agent refused the request (%s): subscribing by PID needs SPIRE 1.10.2 or later", st.Message())
	}
	return err
}
