package wlapi

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// follow runs step now and then every Poll, until step fails, the RPC is
// cancelled, the caller's process exits or the server shuts down. step
// sends a message when the state changed since the last it sent.
func (s *Server) follow(ctx context.Context, cs *connState, step func() error) error {
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	for {
		if err := step(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-cs.gone:
			return status.Errorf(codes.Unavailable, "wlapi: process %d exited", cs.pid())
		case <-s.ctx.Done():
			return errShutdown
		case <-t.C:
		}
	}
}
