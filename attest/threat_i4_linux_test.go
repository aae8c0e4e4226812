//go:build linux

package attest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// copyPeer copies peer a to a fresh file (own inode) named name in a fresh
// world-readable directory.
func copyPeer(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(bins.dir, "i4-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if _, err := copyExe(bins.a, path, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// I4: what runs is hashed, not what is at the path now.
func TestThreat_I4_Executable(t *testing.T) {
	for _, tc := range []struct {
		name        string
		file        string
		change      func(t *testing.T, path string) // after the peer started
		wantPath    func(path string) string
		wantDeleted bool
	}{
		{
			name: "replaced on disk", file: "svc", wantDeleted: true,
			change: func(t *testing.T, path string) {
				// The usual upgrade: write a new file, rename it over the old.
				if _, err := copyExe(bins.b, path+".new", nil); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(path+".new", path); err != nil {
					t.Fatal(err)
				}
				if fileSHA256(t, path) != bins.shaB {
					t.Fatal("path does not hold the new content")
				}
			},
		},
		{
			name: "deleted", file: "svc", wantDeleted: true,
			change: func(t *testing.T, path string) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			// A name that really ends in " (deleted)" is not a deleted file.
			name: "named (deleted)", file: "svc (deleted)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(Options{})
			path := copyPeer(t, tc.file)
			c := spawn(t, spawnOpts{exe: path})
			if tc.change != nil {
				tc.change(t, path)
			}
			_, _, proc := attestChild(t, a, c, true)
			if proc.ExePath != path || proc.ExeDeleted != tc.wantDeleted {
				t.Errorf("exe %q deleted %v, want %q %v", proc.ExePath, proc.ExeDeleted, path, tc.wantDeleted)
			}
			if proc.ExeSHA256 != bins.shaA {
				t.Errorf("sha256 %s, want the running content's %s", proc.ExeSHA256, bins.shaA)
			}
			for _, sel := range []string{"unix:path:" + path, "unix:sha256:" + bins.shaA} {
				if !slices.Contains(proc.Selectors, sel) {
					t.Errorf("no selector %q in %q", sel, proc.Selectors)
				}
			}
		})
	}
}

// I4: executables over HashSizeLimit get no sha256 selector; a limit equal
// to the size still hashes.
func TestThreat_I4_HashSizeLimit(t *testing.T) {
	st, err := os.Stat(bins.a)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		limit int64
		want  string
	}{
		{name: "default", limit: 0, want: bins.shaA},
		{name: "equal to size", limit: st.Size(), want: bins.shaA},
		{name: "one byte under", limit: st.Size() - 1},
		{name: "small", limit: 1 << 10},
		{name: "disabled", limit: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := New(Options{HashSizeLimit: tc.limit, Logger: zerolog.New(&logs)})
			_, _, proc := attestChild(t, a, spawn(t, spawnOpts{}), true)
			// Only a cap that bites is worth a warning; -1 is deliberate.
			warned := strings.Contains(logs.String(), "over the hash size limit")
			if warned != (tc.want == "" && tc.limit >= 0) {
				t.Errorf("warning logged %v; logs: %s", warned, logs.String())
			}
			if proc.ExeSHA256 != tc.want {
				t.Errorf("sha256 %q, want %q", proc.ExeSHA256, tc.want)
			}
			hasSHA := slices.ContainsFunc(proc.Selectors, func(s string) bool { return strings.HasPrefix(s, "unix:sha256:") })
			if hasSHA != (tc.want != "") {
				t.Errorf("selectors %q: sha256 selector present %v, want %v", proc.Selectors, hasSHA, tc.want != "")
			}
			if !slices.Contains(proc.Selectors, "unix:path:"+bins.a) {
				t.Errorf("no path selector in %q", proc.Selectors)
			}
		})
	}
}

// I4: a script attests as its interpreter: exe, path and sha256 are the
// interpreter's and nothing names the script (documented in doc.go).
func TestThreat_I4_ScriptInterpreter(t *testing.T) {
	interp, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatalf("no /bin/sh to run a script: %v", err)
	}
	script := filepath.Join(bins.dir, "job.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ready\nread x\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := New(Options{})
	c := spawn(t, spawnOpts{mode: "script", env: []string{envScript + "=" + script}})
	if got := c.line(); got != "ready" {
		t.Fatalf("script said %q", got)
	}
	_, _, proc := attestChild(t, a, c, true)
	if proc.ExePath != interp || proc.ExeSHA256 != fileSHA256(t, interp) {
		t.Errorf("exe %q sha %q, want the interpreter %q", proc.ExePath, proc.ExeSHA256, interp)
	}
	for _, sel := range proc.Selectors {
		if strings.Contains(sel, "job.sh") || strings.Contains(sel, bins.shaA) {
			t.Errorf("selector %q names the script or its launcher", sel)
		}
	}
}
