//go:build linux

package attest

import (
	"bufio"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// I3: a process connects, forks a child that keeps the socket, then execs
// another binary. Pinned decision (doc.go): SO_PEERCRED keeps naming the
// connecting PID, not the child holding the socket; Attest describes that
// PID as it is when attested (the exec'd image); a Fingerprint taken before
// the exec no longer matches, so attestation under it fails with
// ErrPeerGone and a cached attestation is never reused for the new image.
func TestThreat_I3_ForkThenExec(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{name: "pidfd"},
		{name: "start time", opts: Options{DisablePIDFD: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(tc.opts)
			c := spawn(t, spawnOpts{exe: bins.a, mode: "forkexec", env: []string{envExec + "=" + bins.b}})
			// The forked child proves it holds the connection by writing on it.
			held, err := bufio.NewReader(c.conn).ReadString('\n')
			if err != nil {
				t.Fatalf("read from the child holding the socket: %v", err)
			}
			holderPID, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(held, "held ")))
			if err != nil || int32(holderPID) == c.pid() {
				t.Fatalf("holder said %q (connecting pid %d)", held, c.pid())
			}

			p, fpBefore, before := attestChild(t, a, c, true)
			if before.ExePath != bins.a || before.ExeSHA256 != bins.shaA {
				t.Fatalf("before exec: exe %q sha %q, want %q %q", before.ExePath, before.ExeSHA256, bins.a, bins.shaA)
			}

			if _, err := c.conn.Write([]byte{1}); err != nil { // exec now
				t.Fatal(err)
			}
			if got, want := c.line(), "ready "+strconv.Itoa(int(c.pid())); got != want {
				t.Fatalf("exec'd image said %q, want %q", got, want)
			}

			again, err := ReadPeer(c.conn, true)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if again.PID != p.PID {
				t.Errorf("SO_PEERCRED after fork+exec names pid %d, want the connecting pid %d (holder %d)", again.PID, p.PID, holderPID)
			}
			if proc, err := a.Attest(p, fpBefore); !errors.Is(err, ErrPeerGone) {
				t.Fatalf("Attest with the pre-exec Fingerprint: %+v, %v; want ErrPeerGone", proc, err)
			}
			if a.Alive(fpBefore) {
				t.Error("Alive = true for the pre-exec Fingerprint")
			}
			fpAfter, err := a.Fingerprint(p)
			if err != nil {
				t.Fatal(err)
			}
			if fpAfter.StartTime != fpBefore.StartTime || fpAfter.PIDFDIno != fpBefore.PIDFDIno || fpAfter.ExeIno == fpBefore.ExeIno {
				t.Errorf("Fingerprint before %+v, after %+v: want same process, other exe", fpBefore, fpAfter)
			}
			after, err := a.Attest(p, fpAfter)
			if err != nil {
				t.Fatal(err)
			}
			if after.ExePath != bins.b || after.ExeSHA256 != bins.shaB {
				t.Errorf("after exec: exe %q sha %q, want the exec'd image %q %q", after.ExePath, after.ExeSHA256, bins.b, bins.shaB)
			}
		})
	}
}
