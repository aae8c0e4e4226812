package proxy

import (
	"context"
	"sync"
	"sync/atomic"
)

// connSet is the one registry of live things the Server owns outside
// net/http: hijacked client connections (tunnels, WebSockets, raw
// sockets), the fast path's connections, and the exchanges a reload must
// decide again. Shutdown stops additions and waits for the members to
// leave; reload walks them. As caddy's registerConnection and net/http's
// activeConn: members remove themselves when they end.
type connSet[T comparable] struct {
	mu      sync.Mutex
	m       map[T]struct{}
	stopped atomic.Bool
	wg      sync.WaitGroup
}

// add registers v until remove; it reports false once stopAdding ran.
func (cs *connSet[T]) add(v T) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.stopped.Load() {
		return false
	}
	if cs.m == nil {
		cs.m = make(map[T]struct{})
	}
	cs.m[v] = struct{}{}
	cs.wg.Add(1)
	return true
}

// remove ends v's registration.
func (cs *connSet[T]) remove(v T) {
	cs.mu.Lock()
	_, ok := cs.m[v]
	delete(cs.m, v)
	cs.mu.Unlock()
	if ok {
		cs.wg.Done()
	}
}

// stopAdding refuses new members; the present ones carry on.
func (cs *connSet[T]) stopAdding() {
	cs.mu.Lock()
	cs.stopped.Store(true)
	cs.mu.Unlock()
}

// stopping reports that stopAdding ran.
func (cs *connSet[T]) stopping() bool { return cs.stopped.Load() }

// appendTo appends every member to dst.
func (cs *connSet[T]) appendTo(dst []T) []T {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for v := range cs.m {
		dst = append(dst, v)
	}
	return dst
}

// each calls f for every member, outside the lock: f may end a member,
// which removes it.
func (cs *connSet[T]) each(f func(T)) {
	for _, v := range cs.appendTo(nil) {
		f(v)
	}
}

// wait waits until every member has left; when ctx ends first it calls
// end for each member still there, waits for them to leave, and returns
// ctx.Err().
func (cs *connSet[T]) wait(ctx context.Context, end func(T)) error {
	finished := make(chan struct{})
	go func() {
		cs.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		cs.each(end)
		<-finished
		return ctx.Err()
	}
}
