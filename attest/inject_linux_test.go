//go:build linux

package attest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The trusted-library rule: root-owned, writable by no one else, under a
// library directory, every directory above root-owned and not writable by
// others unless sticky.
func TestTrustedLibrary(t *testing.T) {
	root, err := os.MkdirTemp(bins.dir, "libs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(rel string, mode os.FileMode, uid int) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("lib"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := mk("lib/x/good.so", 0o755, 0)
	userOwned := mk("lib/user.so", 0o755, 1000)
	groupWritable := mk("lib/gw.so", 0o775, 0)
	outside := mk("other/out.so", 0o755, 0)
	badDir := mk("lib/open/in.so", 0o755, 0)
	if err := os.Chmod(filepath.Dir(badDir), 0o777); err != nil {
		t.Fatal(err)
	}
	userDir := mk("lib/mine/in.so", 0o755, 0)
	if err := os.Chown(filepath.Dir(userDir), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string // want: "" trusted, else a part of the reason
	}{
		{good, ""},
		{userOwned, "owned by uid 1000"},
		{groupWritable, "mode 0775"},
		{outside, "outside the system library directories"},
		{badDir, "open is owned by uid 0, mode 0777"},
		{userDir, "mine is owned by uid 1000"},
	} {
		tc := tc
		t.Run(filepath.Base(filepath.Dir(tc.path))+"/"+filepath.Base(tc.path), func(t *testing.T) {
			trust := &trustCache{dirs: resolveDirs([]string{filepath.Join(root, "lib")}), ok: map[string]string{}}
			var st unix.Stat_t
			if err := unix.Stat(tc.path, &st); err != nil {
				t.Fatal(err)
			}
			got := trust.library("", tc.path, &st)
			if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Errorf("library(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}
