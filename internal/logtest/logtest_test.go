package logtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// TestConcurrentWriters: lines from many writers all arrive whole, and
// Lines filters them by every substring given.
func TestConcurrentWriters(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				fmt.Fprintf(&b, "writer=%d line=%d\n", w, i)
			}
		}()
	}
	wg.Wait()
	if n := len(b.Lines("writer=")); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
	if got := b.Lines("writer=3 ", "line=42"); !slices.Equal(got, []string{"writer=3 line=42"}) {
		t.Fatalf("Lines(writer=3, line=42) = %q", got)
	}
}
