package load

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A report of h2load 1.52 (Debian bookworm), captured from
// `h2load --h1 -c 8 -t 1 -D 2s --warm-up-time 500ms -B unix:PATH URL`
// against a Go server on a Unix socket that answers every 1000th request
// with 403. "finished in" includes the warm-up; req/s is over the main
// duration.
const h2loadReport = `starting benchmark...
spawning thread #0: 8 total client(s). Timing-based test with 0.5s of warm-up time and 2s of main duration for measurements.
Warm-up started for thread #0.
progress: 12% of clients started
progress: 25% of clients started
progress: 37% of clients started
progress: 50% of clients started
progress: 62% of clients started
progress: 75% of clients started
progress: 87% of clients started
progress: 100% of clients started
Application protocol: http/1.1
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.50s, 53779.50 req/s, 58.62MB/s
requests: 107559 total, 107559 started, 107559 done, 107451 succeeded, 108 failed, 0 errored, 0 timeout
status codes: 107451 2xx, 0 3xx, 108 4xx, 0 5xx
traffic: 117.25MB (122940693) total, 10.94MB (11473352) headers (space savings 0.00%), 127.32MB (133508096) data
                     min         max         mean         sd        +/- sd
time for request:       14us      8.34ms       148us       370us    98.03%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :    6536.68     6900.20     6722.11      133.08    50.00%
`

func TestParseH2load(t *testing.T) {
	r, err := ParseH2load([]byte(h2loadReport))
	if err != nil {
		t.Fatal(err)
	}
	want := H2loadResult{Elapsed: 2500 * time.Millisecond, RPS: 53779.50, Total: 107559, Succeeded: 107451, Failed: 108, Status2xx: 107451, StatusBad: 108}
	if r != want {
		t.Errorf("ParseH2load = %+v\nwant %+v", r, want)
	}
}

func TestParseH2loadMillisecondsAndFailures(t *testing.T) {
	ms := strings.Replace(h2loadReport, "finished in 2.50s", "finished in 512.50ms", 1)
	r, err := ParseH2load([]byte(ms))
	if err != nil || r.Elapsed != 512500*time.Microsecond {
		t.Errorf("elapsed = %v, %v; want 512.5ms", r.Elapsed, err)
	}
	failed := strings.NewReplacer(
		"107451 succeeded", "0 succeeded",
		"status codes: 107451 2xx, 0 3xx, 108 4xx", "status codes: 0 2xx, 0 3xx, 107559 4xx",
	).Replace(h2loadReport)
	if _, err := ParseH2load([]byte(failed)); err == nil || !strings.Contains(err.Error(), "no request succeeded") {
		t.Errorf("all-failed report: err = %v, want 'no request succeeded'", err)
	}
	if _, err := ParseH2load([]byte("h2load: could not connect\n")); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("truncated report: err = %v, want 'incomplete'", err)
	}
}

func TestH2loadArgs(t *testing.T) {
	h := H2load{Socket: "/run/x.sock", URL: "http://echo.bench.test/1k", Conns: 64, Warmup: 500 * time.Millisecond, Duration: 3 * time.Second}
	want := []string{"--h1", "-c", "64", "-t", "1", "-D", "3s", "--warm-up-time", "500ms", "-B", "unix:/run/x.sock", "http://echo.bench.test/1k"}
	if got := h.Args(); !slices.Equal(got, want) {
		t.Errorf("Args = %q\nwant %q", got, want)
	}
}
