//go:build linux

package attest

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

// TestProcmapQueryMatchesMapsText: PROCMAP_QUERY and the maps text give
// the same executable file mappings, for procmesh's own process (a Go
// binary) and a dynamically linked C program. The kernel must have
// the ioctl (Linux 6.11; this machine runs newer): a kernel without it
// fails the test rather than comparing the text with itself.
func TestProcmapQueryMatchesMapsText(t *testing.T) {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	for _, pid := range []int32{int32(os.Getpid()), int32(sleep.Process.Pid)} {
		collect := func(text bool) []mapping {
			a := New(Options{})
			a.noProcmapQuery.Store(text)
			var got []mapping
			if err := a.eachExecMapping(pid, func(m mapping) error { got = append(got, m); return nil }); err != nil {
				t.Fatalf("pid %d: %v", pid, err)
			}
			if !text && a.noProcmapQuery.Load() {
				t.Fatalf("the kernel refused PROCMAP_QUERY")
			}
			return got
		}
		text, query := collect(true), collect(false)
		if len(text) == 0 {
			t.Fatalf("pid %d: no executable mappings in the maps text", pid)
		}
		if !slices.Equal(text, query) {
			t.Errorf("pid %d: PROCMAP_QUERY gave\n%+v\nthe maps text\n%+v", pid, query, text)
		}
	}
}

// BenchmarkExecMappings: the executable mappings of this process, by
// PROCMAP_QUERY and from the maps text.
func BenchmarkExecMappings(b *testing.B) {
	for _, mode := range []struct {
		name string
		text bool
	}{{"query", false}, {"text", true}} {
		b.Run(mode.name, func(b *testing.B) {
			a := New(Options{})
			a.noProcmapQuery.Store(mode.text)
			pid := int32(os.Getpid())
			b.ReportAllocs()
			for b.Loop() {
				if err := a.eachExecMapping(pid, func(mapping) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
