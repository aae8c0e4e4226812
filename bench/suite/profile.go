package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/procmesh/procmesh/bench/load"
	"github.com/procmesh/procmesh/bench/peers"
	"github.com/procmesh/procmesh/bench/report"
)

// profilePlan builds procmesh with net/http/pprof added through a build
// overlay (no source file of procmesh changes), runs it on its own sockets
// beside the measured one, and takes CPU and allocation profiles under the
// keep-alive and the fixed-rate loads.
func (e *env) profilePlan(outDir string) *plan {
	p := &plan{}
	var (
		proc *peers.Proc
		addr string
		sock peers.Sockets
		err  error
	)
	p.steps = append(p.steps, step{label: "profile: build procmesh with pprof (go build -overlay) and start it", run: func() string {
		proc, addr, sock, err = e.startProfiled()
		if err != nil {
			e.run.Profiles = append(e.run.Profiles, report.Profile{Name: "procmesh", Error: err.Error()})
			return "error: " + err.Error()
		}
		return "listening, pprof on " + addr
	}})
	loads := []struct {
		name, desc string
		run        func(ctx context.Context, d time.Duration) int64
	}{
		{"keepalive", fmt.Sprintf("HTTP/1.1 keep-alive, %d connections, Go client, closed loop", e.cfg.KAConns), func(ctx context.Context, d time.Duration) int64 {
			return load.RunClosed(ctx, load.Closed{Dial: load.UnixDialer(sock.HTTP), Request: load.Request(peers.HostH1, "/1k"), Conns: e.cfg.KAConns, Duration: d}).All
		}},
		{"rate", fmt.Sprintf("fixed rate %.0f req/s, %d connections, Go client", e.cfg.Rate, e.cfg.RateConns), func(ctx context.Context, d time.Duration) int64 {
			return load.RunOpen(ctx, load.Open{Dial: load.UnixDialer(sock.HTTP), Request: load.Request(peers.HostH1, "/1k"), Rate: e.cfg.Rate, Conns: e.cfg.RateConns, Duration: d}).All
		}},
		{"cold", "cold identity: one new process per request, each a uid procmesh has not seen (attest + mint + handshake)", func(ctx context.Context, d time.Duration) int64 {
			// The profiling build is a process of its own: every registered
			// cold uid is new to it.
			sp := e.coldSpawn(&contestant{name: profileInstance, sockets: sock})
			var n int64
			for end := time.Now().Add(d); time.Now().Before(end) && ctx.Err() == nil && e.coldNext[profileInstance] < len(e.coldUIDs); {
				ttfb, _, _ := sp.Run(ctx, 1)
				n += int64(len(ttfb))
			}
			return n
		}},
	}
	for _, l := range loads {
		p.steps = append(p.steps, step{label: "profile: procmesh under " + l.name, run: func() string {
			if proc == nil {
				return "skipped"
			}
			return e.profileUnder(addr, outDir, l.name, l.desc, l.run)
		}})
	}
	p.steps = append(p.steps, step{label: "profile: procmesh holding idle connections", run: func() string {
		if proc == nil {
			return "skipped"
		}
		return e.profileIdle(addr, outDir, sock)
	}})
	p.finish = func() {
		if proc != nil {
			proc.Stop(5 * time.Second)
		}
	}
	return p
}

func (e *env) startProfiled() (*peers.Proc, string, peers.Sockets, error) {
	bin := e.path("bin/procmesh-pprof")
	overlay := e.path("pprof-overlay.json")
	src, err := filepath.Abs(filepath.Join(e.cfg.Repo, "bench/pprof/pprof.go.in"))
	if err != nil {
		return nil, "", peers.Sockets{}, err
	}
	target, _ := filepath.Abs(filepath.Join(e.cfg.ProcmeshSrc, "cmd/procmesh/zz_bench_pprof.go"))
	b, _ := json.Marshal(map[string]map[string]string{"Replace": {target: src}})
	if err := os.WriteFile(overlay, b, 0o644); err != nil {
		return nil, "", peers.Sockets{}, err
	}
	cmd := exec.CommandContext(e.ctx, goTool(), "build", "-overlay", overlay, "-o", bin, "./cmd/procmesh")
	cmd.Dir = e.cfg.ProcmeshSrc
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, "", peers.Sockets{}, fmt.Errorf("go build -overlay: %v: %s", err, firstLine(string(out)))
	}
	dir := e.path("prof")
	os.MkdirAll(dir, 0o755)
	os.Chmod(dir, 0o755)
	cfg := e.pmCfg
	cfg.Dir = dir
	cfg.LogFile = filepath.Join(dir, "procmesh.log")
	file := filepath.Join(dir, "procmesh.yaml")
	if err := os.WriteFile(file, []byte(e.procmeshYAML(cfg)), 0o644); err != nil {
		return nil, "", peers.Sockets{}, err
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, "", peers.Sockets{}, err
	}
	sock := cfg.Sockets()
	p, err := peers.Start("procmesh-pprof", []string{bin, "run", "-config", file},
		append(e.procmeshEnv(), "PROCMESH_BENCH_PPROF="+addr), filepath.Join(dir, "procmesh.out"))
	if err != nil {
		return nil, "", sock, err
	}
	if err := p.WaitSockets(20*time.Second, sock.HTTP); err != nil {
		p.Stop(2 * time.Second)
		return nil, "", sock, err
	}
	return p, addr, sock, nil
}

// memstats are the allocation counters of the profiling build.
type memstats struct {
	TotalAlloc uint64 `json:"total_alloc"`
	Mallocs    uint64 `json:"mallocs"`
	NumGC      uint64 `json:"num_gc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Goroutines uint64 `json:"goroutines"`
}

// profileIdle opens idle connections to the profiling build and splits
// what each costs into goroutine stacks and heap, with the heap profile of
// what they hold.
func (e *env) profileIdle(addr, outDir string, sock peers.Sockets) string {
	n := min(e.idleConns(), 2000)
	var ms0, ms1 memstats
	// ?gc=1 collects first, so heap_inuse counts live objects.
	if err := fetch(e.ctx, "http://"+addr+"/debug/pprof/heap?gc=1", filepath.Join(outDir, "idle-heap-before.pb.gz")); err != nil {
		return "error: " + err.Error()
	}
	if err := fetchJSON(e.ctx, "http://"+addr+"/debug/bench/memstats", &ms0); err != nil {
		return "error: " + err.Error()
	}
	conns, firstErr := e.openIdle(&contestant{name: report.Procmesh, sockets: sock}, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	sleep(e.ctx, 500*time.Millisecond)
	after := filepath.Join(outDir, "idle-heap.pb.gz")
	err := fetch(e.ctx, "http://"+addr+"/debug/pprof/heap?gc=1", after)
	if err == nil {
		err = fetchJSON(e.ctx, "http://"+addr+"/debug/bench/memstats", &ms1)
	}
	if err != nil || len(conns) == 0 {
		return fmt.Sprintf("error: %v %s", err, firstErr)
	}
	k := float64(len(conns))
	summary := fmt.Sprintf("%d idle connections: %.1f goroutines, %.1f KiB of goroutine stack and %.1f KiB of live heap per connection",
		len(conns), float64(ms1.Goroutines-ms0.Goroutines)/k, (float64(ms1.StackInuse)-float64(ms0.StackInuse))/k/1024, (float64(ms1.HeapInuse)-float64(ms0.HeapInuse))/k/1024)
	prof := report.Profile{Name: "idle", Load: summary, Kind: "inuse_space", File: relResult(after)}
	out, err := exec.CommandContext(e.ctx, goTool(), "tool", "pprof", "-top", "-nodecount=20", "-sample_index=inuse_space",
		"-base", filepath.Join(outDir, "idle-heap-before.pb.gz"), after).CombinedOutput()
	if err != nil {
		prof.Error = fmt.Sprintf("go tool pprof: %v: %s", err, firstLine(string(out)))
	} else {
		prof.Top = trimPprof(string(out))
		os.WriteFile(strings.TrimSuffix(after, ".pb.gz")+"-top.txt", out, 0o644)
	}
	e.run.Profiles = append(e.run.Profiles, prof)
	return summary
}

// profileUnder runs a load for the profile duration plus a second, takes a
// CPU profile over its middle and the allocations made during it, and
// records the top entries of both, with allocations per request.
func (e *env) profileUnder(addr, outDir, name, desc string, run func(context.Context, time.Duration) int64) string {
	d := max(e.cfg.ProfileDuration.Round(time.Second), time.Second)
	os.MkdirAll(outDir, 0o755)
	before := filepath.Join(outDir, name+"-allocs-before.pb.gz")
	if err := fetch(e.ctx, "http://"+addr+"/debug/pprof/allocs", before); err != nil {
		return "error: " + err.Error()
	}
	var ms0, ms1 memstats
	if err := fetchJSON(e.ctx, "http://"+addr+"/debug/bench/memstats", &ms0); err != nil {
		return "error: " + err.Error()
	}
	requests := make(chan int64, 1)
	go func() { requests <- run(e.ctx, d+time.Second) }()
	sleep(e.ctx, 500*time.Millisecond)
	cpuFile := filepath.Join(outDir, name+"-cpu.pb.gz")
	cpuErr := fetch(e.ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())), cpuFile)
	n := <-requests
	memErr := fetchJSON(e.ctx, "http://"+addr+"/debug/bench/memstats", &ms1)
	after := filepath.Join(outDir, name+"-allocs.pb.gz")
	allocErr := fetch(e.ctx, "http://"+addr+"/debug/pprof/allocs", after)
	perReq := ""
	if memErr == nil && n > 0 {
		perReq = fmt.Sprintf("%d requests: %.1f allocations and %.1f KiB allocated per request, %d GC cycles",
			n, float64(ms1.Mallocs-ms0.Mallocs)/float64(n), float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(n)/1024, ms1.NumGC-ms0.NumGC)
	}
	var res []string
	for _, pr := range []struct {
		kind string
		file string
		err  error
		args []string
	}{
		{"cpu", cpuFile, cpuErr, []string{"-top", "-nodecount=20", cpuFile}},
		{"cpu (cumulative)", cpuFile, cpuErr, []string{"-top", "-cum", "-nodecount=30", cpuFile}},
		{"alloc_space", after, allocErr, []string{"-top", "-nodecount=20", "-sample_index=alloc_space", "-base", before, after}},
	} {
		prof := report.Profile{Name: name, Load: desc, Kind: pr.kind, File: relResult(pr.file)}
		if pr.kind == "alloc_space" && perReq != "" {
			prof.Load += "; " + perReq
		}
		if pr.err != nil {
			prof.Error = pr.err.Error()
		} else {
			out, err := exec.CommandContext(e.ctx, goTool(), append([]string{"tool", "pprof"}, pr.args...)...).CombinedOutput()
			if err != nil {
				prof.Error = fmt.Sprintf("go tool pprof: %v: %s", err, firstLine(string(out)))
			} else {
				prof.Top = trimPprof(string(out))
				suffix := "-top.txt"
				if strings.Contains(pr.kind, "cumulative") {
					suffix = "-top-cum.txt"
				}
				os.WriteFile(strings.TrimSuffix(pr.file, ".pb.gz")+suffix, out, 0o644)
			}
		}
		if prof.Error != "" {
			res = append(res, pr.kind+" error: "+prof.Error)
		} else {
			res = append(res, pr.kind+" ok")
		}
		e.run.Profiles = append(e.run.Profiles, prof)
	}
	if perReq != "" {
		res = append(res, perReq)
	}
	return strings.Join(res, "; ")
}

func fetchJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// trimPprof drops pprof's header lines that name local files.
func trimPprof(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.TrimSpace(strings.Join(keep, "\n"))
}

func relResult(path string) string {
	return filepath.Join(filepath.Base(filepath.Dir(path)), filepath.Base(path))
}

func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
