package proxy

import (
	"context"
	"sync"
	"sync/atomic"
)

// fastConns tracks the fast path's connections so Shutdown can close the
// idle ones and wait for the busy ones.
type fastConns struct {
	mu      sync.Mutex
	m       map[*fastConn]struct{}
	closing atomic.Bool
	wg      sync.WaitGroup
}

func (fs *fastConns) add(fc *fastConn) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closing.Load() {
		return false
	}
	if fs.m == nil {
		fs.m = make(map[*fastConn]struct{})
	}
	fs.m[fc] = struct{}{}
	fs.wg.Add(1)
	return true
}

func (fs *fastConns) remove(fc *fastConn) {
	fs.mu.Lock()
	delete(fs.m, fc)
	fs.mu.Unlock()
	fs.wg.Done()
}

// live returns the exchanges in progress on the fast path's connections.
func (fs *fastConns) live() []*liveConn {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []*liveConn
	for fc := range fs.m {
		if l := fc.live.Load(); l != nil {
			out = append(out, l)
		}
	}
	return out
}

// shutdown closes idle connections, lets busy ones finish their request
// until ctx ends, then closes them.
func (fs *fastConns) shutdown(ctx context.Context) error {
	fs.mu.Lock()
	fs.closing.Store(true)
	var idle []*fastConn
	for fc := range fs.m {
		if fc.state.CompareAndSwap(fastIdle, fastClosed) {
			idle = append(idle, fc)
		}
	}
	fs.mu.Unlock()
	for _, fc := range idle {
		fc.cc.Close()
	}
	done := make(chan struct{})
	go func() {
		fs.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		fs.mu.Lock()
		for fc := range fs.m {
			fc.cc.Close()
		}
		fs.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
