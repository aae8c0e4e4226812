package proxy

import "context"

// shutdownFast closes the fast path's idle connections, lets busy ones
// finish their request until ctx ends, then closes them.
func (s *Server) shutdownFast(ctx context.Context) error {
	s.fast.stopAdding()
	s.fast.each(func(fc *fastConn) {
		if fc.state.CompareAndSwap(fastIdle, fastClosed) {
			fc.cc.Close()
		}
	})
	return s.fast.wait(ctx, func(fc *fastConn) { fc.cc.Close() })
}
