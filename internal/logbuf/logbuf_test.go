package logbuf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// logFile opens a real append-only file, as procmesh opens log.file.
func logFile(t *testing.T) (*os.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "procmesh.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, w *Writer, line string) {
	t.Helper()
	if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
		t.Fatalf("Write(%q) = %d, %v", line, n, err)
	}
}

// waitFor polls the file until it holds want or a generous deadline passes.
func waitFor(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for read(t, path) != want {
		if time.Now().After(deadline) {
			t.Fatalf("file holds %q, want %q", read(t, path), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBuffersUntilFlush(t *testing.T) {
	f, path := logFile(t)
	w := New(f, Options{FlushInterval: time.Hour})
	write(t, w, "a\n")
	write(t, w, "b\n")
	if got := read(t, path); got != "" {
		t.Fatalf("file holds %q before any flush, want it empty", got)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "a\nb\n" {
		t.Fatalf("after Flush the file holds %q", got)
	}
}

func TestFlushesOnInterval(t *testing.T) {
	f, path := logFile(t)
	w := New(f, Options{FlushInterval: 20 * time.Millisecond})
	defer w.Close()
	write(t, w, "first\n")
	waitFor(t, path, "first\n")
	// The timer re-arms for the next line after a timed flush.
	write(t, w, "second\n")
	waitFor(t, path, "first\nsecond\n")
}

func TestCloseFlushesAndLaterWritesGoStraightThrough(t *testing.T) {
	f, path := logFile(t)
	w := New(f, Options{FlushInterval: time.Hour})
	write(t, w, "before close\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, path); got != "before close\n" {
		t.Fatalf("after Close the file holds %q", got)
	}
	write(t, w, "after close\n")
	if got := read(t, path); got != "before close\nafter close\n" {
		t.Fatalf("a write after Close was not written at once: file holds %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestFullBufferWritesWholeLines(t *testing.T) {
	f, path := logFile(t)
	w := New(f, Options{FlushInterval: time.Hour, Size: 100})
	line := strings.Repeat("x", 29) + "\n" // 30 bytes: three fit, the fourth does not
	for range 4 {
		write(t, w, line)
	}
	if got, want := read(t, path), strings.Repeat(line, 3); got != want {
		t.Fatalf("after overflowing the buffer the file holds %q, want the first three whole lines", got)
	}
	long := strings.Repeat("y", 150) + "\n" // longer than the buffer: written by itself, after the buffered line
	write(t, w, long)
	if got, want := read(t, path), strings.Repeat(line, 4)+long; got != want {
		t.Fatalf("a line longer than the buffer: file holds %q, want %q", got, want)
	}
}

func TestZeroIntervalWritesEveryLineAtOnce(t *testing.T) {
	f, path := logFile(t)
	w := New(f, Options{})
	write(t, w, "one\n")
	if got := read(t, path); got != "one\n" {
		t.Fatalf("flush_interval 0: file holds %q right after Write", got)
	}
}

func TestWarningsAreWrittenAtOnceAfterWhatWasBuffered(t *testing.T) {
	f, path := logFile(t)
	w := New(f, Options{FlushInterval: time.Hour})
	log := zerolog.New(w)
	log.Info().Msg("info")
	log.Log().Str("log", "audit").Msg("")
	if got := read(t, path); got != "" {
		t.Fatalf("info and audit lines were not buffered: %q", got)
	}
	log.Warn().Msg("warn")
	want := `{"level":"info","message":"info"}` + "\n" + `{"log":"audit"}` + "\n" + `{"level":"warn","message":"warn"}` + "\n"
	if got := read(t, path); got != want {
		t.Fatalf("after a warning the file holds\n%s\nwant\n%s", got, want)
	}
}

func TestFailedTimedFlushIsReported(t *testing.T) {
	f, _ := logFile(t)
	f.Close() // every write fails from now on
	errs := make(chan error, 1)
	w := New(f, Options{FlushInterval: 10 * time.Millisecond, OnError: func(err error) { errs <- err }})
	defer w.Close()
	write(t, w, "lost\n")
	select {
	case err := <-errs:
		if !errors.Is(err, os.ErrClosed) || !strings.Contains(err.Error(), "5 bytes of buffered log lines") {
			t.Fatalf("OnError got %v, want the closed-file error naming 5 bytes", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed timed flush was not reported to OnError")
	}
}

// TestConcurrentWritersKeepLinesIntact: many goroutines log through a small
// buffer with a short interval, so size flushes, timed flushes and urgent
// writes interleave; the file must hold every line once, whole and in each
// writer's order. Run with -race.
func TestConcurrentWritersKeepLinesIntact(t *testing.T) {
	f, path := logFile(t)
	w := New(f, Options{FlushInterval: time.Millisecond, Size: 4096})
	const writers, lines = 8, 500
	line := func(g, i int) string {
		return fmt.Sprintf("g=%d i=%d |%s|", g, i, strings.Repeat("p", (g*131+i*17)%300))
	}
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				p := []byte(line(g, i) + "\n")
				var err error
				if i%50 == 0 {
					_, err = w.WriteLevel(zerolog.ErrorLevel, p)
				} else {
					_, err = w.Write(p)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(read(t, path), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("file has %d lines, want %d", len(got), writers*lines)
	}
	for _, l := range got {
		var g, i int
		if _, err := fmt.Sscanf(l, "g=%d i=%d", &g, &i); err != nil || g < 0 || g >= writers {
			t.Fatalf("torn or foreign line %q", l)
		}
		if l != line(g, i) {
			t.Fatalf("damaged line %q", l)
		}
		if i != next[g] {
			t.Fatalf("writer %d: line %d follows line %d", g, i, next[g]-1)
		}
		next[g]++
	}
}
