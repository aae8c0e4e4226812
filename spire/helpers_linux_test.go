//go:build linux

package spire_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/internal/logtest"
	"github.com/procmesh/procmesh/internal/spiretest"
	"github.com/procmesh/procmesh/spire"
)

const td = "spiffe://" + spiretest.TrustDomain

// world is a SPIRE deployment, a Source over it, and a directory of
// executables every uid can run.
type world struct {
	t   testing.TB
	sp  *spiretest.SPIRE
	src *spire.Source
	att *attest.Attestor
	dir string
	log *logtest.Buffer
}

func newWorld(t testing.TB, opts spire.Options) *world {
	return newWorldWith(t, spiretest.Options{}, opts)
}

func newWorldWith(t testing.TB, so spiretest.Options, opts spire.Options) *world {
	t.Helper()
	w := &world{t: t, sp: spiretest.Start(t, so), att: attest.New(attest.Options{}), log: &logtest.Buffer{}}
	dir, err := os.MkdirTemp("", "spire-bins-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.dir = dir
	opts.AdminSocket = w.sp.AdminSocket
	opts.Alive = w.att.Alive
	opts.Logger = zerolog.New(w.log)
	if w.src, err = spire.New(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.src.Close() })
	return w
}

// copyBin copies an executable into the world's directory under name.
func (w *world) copyBin(src, name string) string {
	w.t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		w.t.Fatal(err)
	}
	p := filepath.Join(w.dir, name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// start runs bin as uid with args; its stdin is a pipe the returned
// writer feeds. It is killed when the test ends.
func (w *world) start(bin string, uid int, args ...string) (*exec.Cmd, io.WriteCloser) {
	w.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	in, err := cmd.StdinPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	for i := 0; ; i++ {
		err = cmd.Start()
		if err == nil || i == 20 || !errors.Is(err, syscall.ETXTBSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
		cmd = exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		if in, err = cmd.StdinPipe(); err != nil {
			w.t.Fatal(err)
		}
	}
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, in
}

// fingerprint attests pid as procmesh would.
func (w *world) fingerprint(pid int) attest.Fingerprint {
	w.t.Helper()
	peer, err := w.att.PeerFromPID(int32(pid))
	if err != nil {
		w.t.Fatal(err)
	}
	defer peer.Close()
	fp, err := w.att.Fingerprint(peer)
	if err != nil {
		w.t.Fatal(err)
	}
	return fp
}

// eventually polls cond for up to 20s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// startAtPID starts bin at pid (free now) by writing pid-1 to
// ns_last_pid; other processes on the node may take it first, so it
// tries again, and returns nil when someone else holds the PID.
func (w *world) startAtPID(pid int, bin string, uid int, args ...string) *exec.Cmd {
	w.t.Helper()
	const nsLastPID = "/proc/sys/kernel/ns_last_pid"
	for range 200 {
		if err := os.WriteFile(nsLastPID, []byte(strconv.Itoa(pid-1)), 0); err != nil {
			w.t.Fatalf("cannot arrange PID reuse: write %s: %v", nsLastPID, err)
		}
		c, _ := w.start(bin, uid, args...)
		if c.Process.Pid == pid {
			return c
		}
		c.Process.Kill()
		c.Wait()
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			return nil
		}
	}
	return nil
}

// registered copies src to the test's directory as name and registers it
// in SPIRE as td/app/name by its path (extra: spire-server entry create
// flags), waiting until the agent has the entry.
func (w *world) registered(src, name string, extra ...string) (bin, id string) {
	w.t.Helper()
	bin, id = w.copyBin(src, name), td+"/app/"+strings.TrimPrefix(name, "sleep-")
	w.sp.CreateEntryWith(extra, id, "unix:path:"+bin)
	w.sp.WaitEntry(id, "unix:path:"+bin)
	return bin, id
}

// identified starts bin as uid 1000 and asks the source for its identity.
func (w *world) identified(bin string) (*exec.Cmd, attest.Fingerprint, spiffeid.ID) {
	w.t.Helper()
	c, _ := w.start(bin, 1000, "1000")
	fp := w.fingerprint(c.Process.Pid)
	id, err := w.src.Identify(ctx(w.t), fp)
	if err != nil {
		w.t.Fatal(err)
	}
	return c, fp, id
}
