//go:build linux

package attest

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/procmesh/procmesh/internal/injecttest"
)

var user1000 = &syscall.Credential{Uid: 1000, Gid: 1000}

// victimOpts runs the C victim as uid 1000; it connects to the socket
// spawn passes in envSock. (Not through a shell: a scrubbing LD_PRELOAD
// would already scrub it in the shell.)
func victimOpts(victim string, env ...string) spawnOpts {
	return spawnOpts{exe: victim, cred: user1000, env: env}
}

// I17: code injected with LD_PRELOAD is seen even when the preloaded
// library scrubbed LD_PRELOAD from the environment (the maps show it); a
// loader variable left in the environment is seen too; the same binary
// started plainly is clean.
func TestThreat_I17_InjectedCode(t *testing.T) {
	fx := injecttest.Build(t, bins.dir, envSock)
	a := New(Options{})

	t.Run("clean", func(t *testing.T) {
		c := spawn(t, victimOpts(fx.Victim))
		_, _, proc := attestChild(t, a, c, true)
		if proc.ExePath != fx.Victim {
			t.Fatalf("attested %q, want the victim %q", proc.ExePath, fx.Victim)
		}
		if proc.InjectedCode != nil || proc.Traced || proc.TracerPID != 0 {
			t.Errorf("plain victim: injected %q traced %v (tracer %d), want none", proc.InjectedCode, proc.Traced, proc.TracerPID)
		}
	})

	t.Run("LD_PRELOAD scrubbed from environ", func(t *testing.T) {
		c := spawn(t, victimOpts(fx.Victim, "LD_PRELOAD="+fx.Preload))
		if got := c.line(); got != "ready" {
			t.Fatalf("victim said %q", got)
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(int(c.pid())) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(env, []byte("LD_PRELOAD=")) {
			t.Fatal("the preloaded library did not scrub LD_PRELOAD: the test would not show the maps check")
		}
		_, _, proc := attestChild(t, a, c, true)
		if proc.ExePath != fx.Victim {
			t.Fatalf("attested %q, want the victim %q", proc.ExePath, fx.Victim)
		}
		if !slices.ContainsFunc(proc.InjectedCode, func(s string) bool { return strings.HasPrefix(s, fx.Preload+" ") }) {
			t.Errorf("injected code %q does not name %s", proc.InjectedCode, fx.Preload)
		}
	})

	t.Run("LD_LIBRARY_PATH", func(t *testing.T) {
		c := spawn(t, victimOpts(fx.Victim, "LD_LIBRARY_PATH=/nonexistent"))
		_, _, proc := attestChild(t, a, c, true)
		if !slices.Contains(proc.InjectedCode, "LD_LIBRARY_PATH=/nonexistent in its environment") {
			t.Errorf("injected code %q does not name LD_LIBRARY_PATH", proc.InjectedCode)
		}
	})

	t.Run("library directory is configurable", func(t *testing.T) {
		// With the fixture's directory trusted, its root-owned library is
		// a system library like the others.
		a := New(Options{LibraryDirs: append(systemLibraryDirs(DefaultLdSoConf), bins.dir)})
		c := spawn(t, victimOpts(fx.Victim, "LD_PRELOAD="+fx.Preload))
		_, _, proc := attestChild(t, a, c, true)
		if proc.InjectedCode != nil {
			t.Errorf("injected code %q, want none with %s trusted", proc.InjectedCode, bins.dir)
		}
	})
}

// I17: a library deleted while mapped (an upgrade under a running
// process) is judged by the path it had and its owner: trusted in a
// library directory, foreign when a user owned it.
func TestThreat_I17_DeletedLibrary(t *testing.T) {
	fx := injecttest.Build(t, bins.dir, envSock)
	libs, err := os.MkdirTemp(bins.dir, "libs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(libs, 0o755); err != nil {
		t.Fatal(err)
	}
	a := New(Options{LibraryDirs: append(systemLibraryDirs(DefaultLdSoConf), libs)})
	for _, tc := range []struct {
		name    string
		owner   int
		foreign bool
	}{
		{name: "root-owned", owner: 0},
		{name: "user-owned", owner: 1000, foreign: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lib := libs + "/" + tc.name + ".so"
			if _, err := copyExe(fx.Preload, lib, nil); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(lib, tc.owner, tc.owner); err != nil {
				t.Fatal(err)
			}
			c := spawn(t, victimOpts(fx.Victim, "LD_PRELOAD="+lib))
			if got := c.line(); got != "ready" {
				t.Fatalf("victim said %q", got)
			}
			if err := os.Remove(lib); err != nil {
				t.Fatal(err)
			}
			_, _, proc := attestChild(t, a, c, true)
			named := slices.ContainsFunc(proc.InjectedCode, func(s string) bool { return strings.HasPrefix(s, lib+" (deleted) ") })
			if named != tc.foreign || (!tc.foreign && proc.InjectedCode != nil) {
				t.Errorf("injected code %q; want %s named: %v", proc.InjectedCode, lib, tc.foreign)
			}
		})
	}
}

// I17: in another mount namespace (a container) a mapped library is
// judged in the process's own view: a root-owned library a rootful
// runtime bind-mounts into a library directory is a system library; a
// library a user copied into their own user and mount namespace is not,
// although it sits at the same path.
func TestThreat_I17_LibraryInOtherMountNamespace(t *testing.T) {
	fx := injecttest.Build(t, bins.dir, envSock)
	mkdir := func(name string) string {
		d, err := os.MkdirTemp(bins.dir, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	src, mnt := mkdir("libsrc-"), mkdir("libmnt-")
	lib := src + "/lib.so"
	if _, err := copyExe(fx.Preload, lib, nil); err != nil {
		t.Fatal(err)
	}
	a := New(Options{LibraryDirs: append(systemLibraryDirs(DefaultLdSoConf), mnt)})
	run := `exec env LD_PRELOAD="$2/lib.so" "$3"`

	t.Run("root-owned library bind-mounted by root", func(t *testing.T) {
		c := spawn(t, spawnOpts{exe: "/usr/bin/unshare", args: []string{"-m", "sh", "-c",
			`mount --bind "$1" "$2" && ` + run, "sh", src, mnt, fx.Victim}})
		if got := c.line(); got != "ready" {
			t.Fatalf("victim said %q", got)
		}
		_, _, proc := attestChild(t, a, c, true)
		if proc.ExePath != fx.Victim || !mapsName(t, c.pid(), mnt+"/lib.so") {
			t.Fatalf("attested %q; want the victim with %s/lib.so mapped", proc.ExePath, mnt)
		}
		if proc.InjectedCode != nil {
			t.Errorf("injected code %q, want none: the library is root's, in a library directory", proc.InjectedCode)
		}
	})

	t.Run("user's library in a user namespace", func(t *testing.T) {
		o := asUser1000InMountNS(t, `mount -t tmpfs t "$2" && cp "$1/lib.so" "$2/" && `+run, src, mnt, fx.Victim)
		c := spawn(t, o)
		if got := c.line(); got != "ready" {
			t.Fatalf("victim said %q", got)
		}
		_, _, proc := attestChild(t, a, c, true)
		if proc.ExePath != fx.Victim || !mapsName(t, c.pid(), mnt+"/lib.so") {
			t.Fatalf("attested %q; want the victim with %s/lib.so mapped", proc.ExePath, mnt)
		}
		if !slices.ContainsFunc(proc.InjectedCode, func(s string) bool { return strings.HasPrefix(s, mnt+"/lib.so ") }) {
			t.Errorf("injected code %q does not name %s/lib.so", proc.InjectedCode, mnt)
		}
	})
}

// mapsName reports whether /proc/PID/maps of pid names path.
func mapsName(t *testing.T, pid int32, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(" "+path+"\n"))
}

// I17: a process started traced by an attacker's launcher
// (PTRACE_TRACEME) attests as traced, naming its tracer.
func TestThreat_I17_Traced(t *testing.T) {
	fx := injecttest.Build(t, bins.dir, envSock)
	a := New(Options{})
	c := spawn(t, spawnOpts{mode: "trace", cred: user1000, env: []string{envExec + "=" + fx.Victim}})
	if got := c.line(); got != "ready" {
		t.Fatalf("victim said %q", got)
	}
	_, _, proc := attestChild(t, a, c, true)
	if proc.ExePath != fx.Victim {
		t.Fatalf("attested %q, want the victim %q", proc.ExePath, fx.Victim)
	}
	if !proc.Traced || proc.TracerPID != c.pid() {
		t.Errorf("traced %v by %d, want traced by the launcher %d", proc.Traced, proc.TracerPID, c.pid())
	}
}
