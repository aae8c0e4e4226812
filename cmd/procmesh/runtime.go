package main

import (
	"os"
	"runtime"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/config"
)

// applyRuntime sets GOMAXPROCS, the GC percentage and the memory limit from
// the runtime section. The Go environment variables (GOMAXPROCS, GOGC,
// GOMEMLIMIT) win over the file, so an operator can still try a value on
// one node without editing it.
func applyRuntime(r config.Runtime, log zerolog.Logger) {
	if r.MaxProcs > 0 && os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(r.MaxProcs)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(r.GCPercent)
	}
	if r.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(r.MemoryLimit)
	}
	log.Debug().Int("gomaxprocs", runtime.GOMAXPROCS(0)).Int("gc_percent", r.GCPercent).
		Int64("memory_limit", r.MemoryLimit).Msg("runtime settings")
}

// releaseStartupMemory returns to the OS the heap that loading the config,
// the CA and the registry needed once. Without it the runtime keeps the
// pages up to its heap goal (4 MiB at gc_percent 100) resident for good,
// about 2 MiB of an idle node's RSS. It costs one GC of a small heap, once.
func releaseStartupMemory() { debug.FreeOSMemory() }
