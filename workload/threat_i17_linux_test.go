//go:build linux

package workload_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/procmesh/procmesh/internal/injecttest"
	"github.com/procmesh/procmesh/registry"
	"github.com/procmesh/procmesh/workload"
)

const (
	envVictimSock = "PM_VICTIM_SOCK"       // the C victim connects here
	envTraceExec  = "PM_TRACE_VICTIM_EXEC" // the test binary starts this victim traced
)

// traceVictim is the body of the launcher that starts victim traced
// (PTRACE_TRACEME) and keeps it so until its stdin reaches EOF.
func traceVictim(victim string) int {
	runtime.LockOSThread()
	cmd := exec.Command(victim)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := injecttest.TraceMe(cmd); err != nil {
		fmt.Fprintln(os.Stderr, "trace:", err)
		return 3
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return 0
}

// resolveVictim starts the victim (through the traced launcher when
// traced), with env added, and resolves its connection.
func (f *fixture) resolveVictim(victim string, traced bool, env ...string) (*workload.Identity, error) {
	f.t.Helper()
	cmd := exec.Command(victim)
	if traced {
		self, _ := os.Executable()
		cmd = exec.Command(self, "-test.run=^$")
		env = append(env, envTraceExec+"="+victim)
	}
	cmd.Env = append([]string{envVictimSock + "=" + f.sock}, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		f.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	c, err := f.ln.AcceptUnix()
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	return f.res.Resolve(context.Background(), c)
}

// I17: a registered binary run with an LD_PRELOAD library (which scrubs
// LD_PRELOAD from its environment) or started traced by another process is
// refused by default, with a message naming the entry and the allow key;
// the entry's allow key accepts it; the same binary run plainly gets its
// identity either way.
func TestThreat_I17_RefusedUnlessAllowed(t *testing.T) {
	fx := injecttest.Build(t, t.TempDir(), envVictimSock)
	b, err := os.ReadFile(fx.Victim)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	entry := registry.Entry{ID: demoID, Selectors: []string{
		"unix:uid:0", "unix:path:" + fx.Victim, "unix:sha256:" + hex.EncodeToString(sum[:]),
	}}
	preload := "LD_PRELOAD=" + fx.Preload
	for _, tc := range []struct {
		name    string
		traced  bool
		env     []string
		allow   registry.Allow
		key     string // "" = resolves; else refused, naming this allow key
		because string
	}{
		{name: "plain", allow: registry.Allow{}},
		{name: "LD_PRELOAD refused", env: []string{preload}, key: "allow.injected_code: true", because: fx.Preload},
		{name: "LD_PRELOAD allowed", env: []string{preload}, allow: registry.Allow{InjectedCode: true}},
		{name: "LD_PRELOAD not allowed by traced", env: []string{preload}, allow: registry.Allow{Traced: true},
			key: "allow.injected_code: true", because: fx.Preload},
		{name: "traced refused", traced: true, key: "allow.traced: true", because: "traced by process"},
		{name: "traced allowed", traced: true, allow: registry.Allow{Traced: true}},
		{name: "traced not allowed by injected_code", traced: true, allow: registry.Allow{InjectedCode: true},
			key: "allow.traced: true", because: "traced by process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := entry
			e.Allow = tc.allow
			f := newFixture(t, e)
			id, err := f.resolveVictim(fx.Victim, tc.traced, tc.env...)
			if tc.key == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if id.ID() != demoID {
					t.Fatalf("resolved as %s", id.ID())
				}
				return
			}
			var nm *workload.NoMatchError
			if !errors.As(err, &nm) {
				t.Fatalf("got identity %v, err %v; want *NoMatchError", id, err)
			}
			if nm.Process.ExePath != fx.Victim {
				t.Fatalf("refused process is %q, want the victim", nm.Process.ExePath)
			}
			if len(nm.Refused) != 1 || nm.Refused[0].ID != demoID {
				t.Errorf("refused by %v, want the victim's entry", nm.Refused)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.key) || !strings.Contains(msg, tc.because) {
				t.Errorf("message %q does not say %q and %q", msg, tc.because, tc.key)
			}
		})
	}
}
