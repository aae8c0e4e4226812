package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// H2load configures one run of nghttp2's h2load over a Unix socket:
// `h2load --h1 -c Conns -t 1 -D Duration --warm-up-time Warmup -B unix:Socket URL`.
// h2load reaches a Unix socket through -B unix:PATH; the URL's host becomes
// the Host header, which procmesh routes by.
type H2load struct {
	Binary   string // default "h2load"
	Socket   string
	URL      string
	Conns    int
	Threads  int // default 1: h2load is the lightest client here; more threads only steal the proxy's cores
	Warmup   time.Duration
	Duration time.Duration
}

// Args returns h2load's command line.
func (h H2load) Args() []string {
	threads := max(h.Threads, 1)
	return []string{"--h1",
		"-c", strconv.Itoa(h.Conns),
		"-t", strconv.Itoa(threads),
		"-D", seconds(h.Duration),
		"--warm-up-time", seconds(h.Warmup),
		"-B", "unix:" + h.Socket,
		h.URL}
}

// seconds renders d as h2load wants a DURATION: a number with a unit.
func seconds(d time.Duration) string {
	ms := d.Milliseconds()
	if ms%1000 == 0 {
		return strconv.FormatInt(ms/1000, 10) + "s"
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// H2loadResult is what the suite reads from h2load's report.
type H2loadResult struct {
	Elapsed   time.Duration
	RPS       float64
	Total     int64
	Succeeded int64
	Failed    int64
	Errored   int64
	Timeout   int64
	Status2xx int64
	StatusBad int64 // 3xx + 4xx + 5xx
}

// Run runs h2load and parses its report.
func (h H2load) Run(ctx context.Context) (H2loadResult, error) {
	bin := h.Binary
	if bin == "" {
		bin = "h2load"
	}
	out, err := exec.CommandContext(ctx, bin, h.Args()...).CombinedOutput()
	if err != nil {
		return H2loadResult{}, fmt.Errorf("load: h2load: %w: %s", err, lastLines(out, 5))
	}
	r, err := ParseH2load(out)
	if err != nil {
		return r, fmt.Errorf("%w: %s", err, lastLines(out, 5))
	}
	return r, nil
}

var (
	reFinished = regexp.MustCompile(`^finished in ([0-9.]+)(ms|s|us|m), ([0-9.]+) req/s`)
	reRequests = regexp.MustCompile(`^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	reStatus   = regexp.MustCompile(`^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// ParseH2load reads h2load's text report: the "finished in" line (elapsed,
// req/s), the "requests:" counters and the "status codes:" line. A report
// without them is an error; so is a run where nothing succeeded.
func ParseH2load(out []byte) (H2loadResult, error) {
	var r H2loadResult
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := reFinished.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[m[2]]
			r.Elapsed = time.Duration(v * float64(unit))
			r.RPS, _ = strconv.ParseFloat(m[3], 64)
			seen |= 1
		}
		if m := reRequests.FindStringSubmatch(line); m != nil {
			n := atoi64s(m[1:])
			r.Total, r.Succeeded, r.Failed, r.Errored, r.Timeout = n[0], n[3], n[4], n[5], n[6]
			seen |= 2
		}
		if m := reStatus.FindStringSubmatch(line); m != nil {
			n := atoi64s(m[1:])
			r.Status2xx, r.StatusBad = n[0], n[1]+n[2]+n[3]
			seen |= 4
		}
	}
	if seen != 7 {
		return r, fmt.Errorf("load: h2load report incomplete (finished/requests/status lines: %03b)", seen)
	}
	if r.Succeeded == 0 || r.Status2xx == 0 {
		return r, fmt.Errorf("load: h2load: no request succeeded (%d failed, %d errored, %d non-2xx)", r.Failed, r.Errored, r.StatusBad)
	}
	return r, nil
}

func atoi64s(ss []string) []int64 {
	out := make([]int64, len(ss))
	for i, s := range ss {
		out[i], _ = strconv.ParseInt(s, 10, 64)
	}
	return out
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
