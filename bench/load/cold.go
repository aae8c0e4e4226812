package load

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ColdClient is what one cold-identity child process does: dial, send one
// request, wait for the first byte of the response, read the rest. The
// time to first byte starts before the dial, so for procmesh it holds
// attestation, minting (for an identity it has not seen), the upstream
// handshake and the request itself.
func ColdClient(ctx context.Context, dial Dialer, req []byte) (time.Duration, error) {
	start := time.Now()
	c, err := dial(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	h := NewH1Conn(c, req)
	if err := h.FirstByte(); err != nil {
		return 0, err
	}
	ttfb := time.Since(start)
	if _, err := ReadResponse(h.br); err != nil {
		return 0, err
	}
	return ttfb, nil
}

// Spawn runs argv once per sample as a new process with the given
// credentials and reads its time to first byte, printed on stdout in
// nanoseconds.
type Spawn struct {
	Argv []string
	// Cred returns the credentials of the i-th process; nil runs it as the
	// harness.
	Cred func(i int) *syscall.Credential
	Env  []string
}

// Run starts n processes one after the other and returns their times to
// first byte. A process that fails is counted, not fatal; its first error
// is returned with the count.
func (s Spawn) Run(ctx context.Context, n int) ([]time.Duration, int, string) {
	var out []time.Duration
	failed, first := 0, ""
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
		cmd.Env = s.Env
		if s.Cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.Cred(i)}
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil {
			var ns int64
			ns, err = strconv.ParseInt(strings.TrimSpace(stdout.String()), 10, 64)
			if err == nil {
				out = append(out, time.Duration(ns))
				continue
			}
		}
		failed++
		if first == "" {
			first = fmt.Sprintf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
	}
	return out, failed, first
}
