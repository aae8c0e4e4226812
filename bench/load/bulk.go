package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/procmesh/procmesh/bench/upstream"
)

// Bulk configures an L4 bulk transfer: Streams connections each writing
// WriteSize-byte chunks for Warmup+Duration, to the upstream's L4 sink
// (upstream.L4Proto) through the contestant.
type Bulk struct {
	Dial      Dialer
	Streams   int
	WriteSize int // default 64 KiB
	Warmup    time.Duration
	Duration  time.Duration
}

// BulkResult is what a bulk transfer measured.
type BulkResult struct {
	Bytes   int64         // acknowledged inside the window, all streams
	Elapsed time.Duration // from the first acknowledgement after warm-up to the last one
}

// Gbps is the throughput in Gbit/s.
func (r BulkResult) Gbps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Elapsed.Seconds() / 1e9
}

type ack struct {
	at    time.Time
	total uint64
}

// RunBulk runs b. Each stream writes whole MiBs (so the sink acknowledges
// its last byte) until the time is up, then waits for the acknowledgement of
// everything it wrote: the measured window ends when the upstream has
// received the bytes, not when the client's socket buffer took them.
func RunBulk(ctx context.Context, b Bulk) (BulkResult, error) {
	if b.WriteSize <= 0 {
		b.WriteSize = 64 << 10
	}
	if upstream.L4AckEvery%b.WriteSize != 0 {
		return BulkResult{}, fmt.Errorf("load: write size %d does not divide the sink's ack interval", b.WriteSize)
	}
	start := time.Now()
	windowFrom := start.Add(b.Warmup)
	stopAt := windowFrom.Add(b.Duration)
	acks := make([][]ack, b.Streams)
	errs := make([]error, b.Streams)
	var wg sync.WaitGroup
	for i := range b.Streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks[i], errs[i] = bulkStream(ctx, b, stopAt)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return BulkResult{}, err
	}
	return bulkWindow(acks, windowFrom)
}

// bulkWindow adds up, over streams, the bytes acknowledged between each
// stream's first acknowledgement at or after from and its last one, over
// the span from the earliest of those first acknowledgements to the latest
// last one.
func bulkWindow(acks [][]ack, from time.Time) (BulkResult, error) {
	var first, last time.Time
	var bytes int64
	for i, as := range acks {
		j := 0
		for j < len(as) && as[j].at.Before(from) {
			j++
		}
		if j >= len(as)-1 {
			return BulkResult{}, fmt.Errorf("load: stream %d: fewer than two acknowledgements after warm-up; lengthen the run", i)
		}
		a, z := as[j], as[len(as)-1]
		bytes += int64(z.total - a.total)
		if first.IsZero() || a.at.Before(first) {
			first = a.at
		}
		if z.at.After(last) {
			last = z.at
		}
	}
	return BulkResult{Bytes: bytes, Elapsed: last.Sub(first)}, nil
}

func bulkStream(ctx context.Context, b Bulk, stopAt time.Time) ([]ack, error) {
	c, err := b.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	var (
		mu         sync.Mutex
		written    uint64
		lastAck    uint64
		writerDone bool
	)
	complete := func() bool { return writerDone && lastAck >= written } // under mu
	type readResult struct {
		acks []ack
		err  error
	}
	res := make(chan readResult, 1)
	go func() {
		var acks []ack
		var buf [8]byte
		for {
			_, err := io.ReadFull(c, buf[:])
			mu.Lock()
			if err != nil {
				ok := complete()
				mu.Unlock()
				if ok {
					err = nil
				} else {
					err = fmt.Errorf("load: bulk: reading acknowledgements: %w", err)
				}
				res <- readResult{acks, err}
				return
			}
			a := ack{at: time.Now(), total: binary.BigEndian.Uint64(buf[:])}
			acks = append(acks, a)
			lastAck = a.total
			ok := complete()
			mu.Unlock()
			if ok {
				res <- readResult{acks, nil}
				return
			}
		}
	}()

	chunk := make([]byte, b.WriteSize)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	perMiB := upstream.L4AckEvery / b.WriteSize
	var werr error
	for werr == nil && time.Now().Before(stopAt) {
		for range perMiB {
			if _, werr = c.Write(chunk); werr != nil {
				break
			}
			mu.Lock()
			written += uint64(b.WriteSize)
			mu.Unlock()
		}
	}
	mu.Lock()
	writerDone = true
	if complete() {
		c.SetReadDeadline(time.Now()) // the reader saw the last ack already
	} else {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
	}
	mu.Unlock()
	if werr != nil {
		c.Close()
		r := <-res
		return r.acks, fmt.Errorf("load: bulk: write: %w", werr)
	}
	r := <-res
	return r.acks, r.err
}
