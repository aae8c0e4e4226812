//go:build linux

package attest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/registry"
)

// asUser1000InMountNS runs script with sh inside a new user and mount
// namespace ("unshare -Urm"), as uid 1000 on the outside: what any local
// user may do where unprivileged user namespaces are allowed.
func asUser1000InMountNS(t *testing.T, script string, args ...string) spawnOpts {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to run as uid 1000: %v", err)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	return spawnOpts{
		exe:  setpriv,
		args: append([]string{"--reuid", "1000", "--regid", "1000", "--clear-groups", "unshare", "-Urm", "sh", "-c", script, "sh"}, args...),
	}
}

// I16: unix:path is the path as procmesh sees it. A user who bind-mounts
// peer b over peer a's path in their own mount namespace and runs it gets
// neither a's path (the file there in procmesh's view is another) nor b's;
// the same binary run through a mount namespace without tricks keeps its
// path.
func TestThreat_I16_PathInOtherMountNamespace(t *testing.T) {
	a := New(Options{})
	// The configs/example.yaml style of entry: uid and path.
	reg, err := registry.New([]registry.Entry{{
		ID:        spiffeid.RequireFromString("spiffe://example.org/peer-a"),
		Selectors: []string{"unix:uid:1000", "unix:path:" + bins.a},
	}})
	if err != nil {
		t.Fatal(err)
	}

	bind := asUser1000InMountNS(t, `mount --bind "$1" "$2" && exec "$2"`, bins.b, bins.a)
	_, _, proc := attestChild(t, a, spawn(t, bind), true)
	if proc.UID != 1000 {
		t.Fatalf("peer uid %d, want 1000 (setpriv did not apply)", proc.UID)
	}
	if proc.ExeSHA256 != bins.shaB {
		t.Fatalf("peer runs sha256 %s, want peer b's %s (bind mount not in effect)", proc.ExeSHA256, bins.shaB)
	}
	if proc.ExePath != bins.a || !proc.ExePathForeign {
		t.Errorf("exe path %q foreign %v, want %q (its own namespace's view) marked foreign", proc.ExePath, proc.ExePathForeign, bins.a)
	}
	for _, sel := range proc.Selectors {
		if strings.HasPrefix(sel, "unix:path:") {
			t.Errorf("peer b bind-mounted over %s got selector %q; selectors: %q", bins.a, sel, proc.Selectors)
		}
	}
	if !slices.Contains(proc.Selectors, "unix:sha256:"+bins.shaB) {
		t.Errorf("no sha256 selector of what runs in %q", proc.Selectors)
	}
	if e, ok := reg.Match(proc.Selectors); ok {
		t.Errorf("peer b bind-mounted over peer a's path got %s", e.ID)
	}

	plain := asUser1000InMountNS(t, `exec "$1"`, bins.a)
	_, _, proc = attestChild(t, a, spawn(t, plain), true)
	if proc.ExePathForeign || !slices.Contains(proc.Selectors, "unix:path:"+bins.a) {
		t.Errorf("peer a run in its own mount namespace: foreign %v, selectors %q; want unix:path:%s",
			proc.ExePathForeign, proc.Selectors, bins.a)
	}
	if _, ok := reg.Match(proc.Selectors); !ok {
		t.Errorf("peer a run in its own mount namespace does not match its entry; selectors %q", proc.Selectors)
	}
}

// I16: a deleted executable keeps its path only in procmesh's own mount
// namespace: elsewhere the path it had names nothing procmesh can check.
func TestThreat_I16_DeletedExeInOtherMountNamespace(t *testing.T) {
	a := New(Options{})
	path := copyPeer(t, "svc")
	// In the user's namespace: copy b to a tmpfs mounted over a's
	// directory, under a's name, run it and delete it.
	o := asUser1000InMountNS(t, `d=$(dirname "$2") && mount -t tmpfs t "$d" && cp "$1" "$2" && exec 3<"$2" && rm "$2" && exec /proc/self/fd/3`, bins.b, path)
	_, _, proc := attestChild(t, a, spawn(t, o), true)
	if proc.ExeSHA256 != bins.shaB {
		t.Fatalf("peer runs sha256 %s, want peer b's %s", proc.ExeSHA256, bins.shaB)
	}
	if !proc.ExeDeleted || !proc.ExePathForeign {
		t.Errorf("exe %q deleted %v foreign %v, want a deleted, foreign path", proc.ExePath, proc.ExeDeleted, proc.ExePathForeign)
	}
	for _, sel := range proc.Selectors {
		if strings.HasPrefix(sel, "unix:path:") {
			t.Errorf("deleted exe in another mount namespace got %q", sel)
		}
	}
}
