package procstat

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A real /proc/PID/stat line of nginx, and one with an awkward comm.
const (
	nginxStat = "4242 (nginx) S 4241 4241 4241 0 -1 4194624 120 0 0 0 37 12 0 0 20 0 1 0 9925 57376768 2158 18446744073709551615 1 1 0 0 0 0 0 4096 134743047 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	weirdStat = "77 (a) b (c) R 1 77 77 0 -1 4194560 0 0 0 0 250 150 0 0 20 0 3 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Stat
		cpu  time.Duration
	}{
		{"nginx worker", nginxStat, Stat{PID: 4242, PPID: 4241, Comm: "nginx", UTime: 37, STime: 12}, 490 * time.Millisecond},
		{"comm with spaces and parentheses", weirdStat, Stat{PID: 77, PPID: 1, Comm: "a) b (c", UTime: 250, STime: 150}, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseStat = %+v, want %+v", got, tt.want)
			}
			if got.CPU() != tt.cpu {
				t.Errorf("CPU() = %v, want %v", got.CPU(), tt.cpu)
			}
		})
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, line := range []string{"", "12 no parens", "12 (x) S 1 2", "x (y) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0"} {
		if _, err := ParseStat([]byte(line)); err == nil {
			t.Errorf("ParseStat(%q) succeeded, want an error", line)
		}
	}
}

// A real /proc/PID/status of procmesh, cut to the memory lines around the
// two the suite reads.
const procmeshStatus = "Name:\tprocmesh\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 1262480 kB\nVmSize:\t 1262480 kB\nVmHWM:\t   12100 kB\nVmRSS:\t   11932 kB\nRssAnon:\t    5044 kB\nRssFile:\t    6888 kB\nRssShmem:\t       0 kB\nVmData:\t   52012 kB\nThreads:\t8\n"

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    Status
		wantErr bool
	}{
		{"procmesh", procmeshStatus, Status{RSS: 11932 << 10, Anon: 5044 << 10}, false},
		{"lines in another order", "RssAnon:\t7 kB\nName:\tx\nVmRSS:\t9 kB\n", Status{RSS: 9 << 10, Anon: 7 << 10}, false},
		{"zombie: no memory lines", "Name:\tzombie\nState:\tZ (zombie)\n", Status{}, false},
		{"VmRSS in MB", "VmRSS:\t12 MB\nRssAnon:\t5 kB\n", Status{}, true},
		{"RssAnon not a number", "VmRSS:\t12 kB\nRssAnon:\tlots kB\n", Status{}, true},
		{"RssAnon without unit", "VmRSS:\t12 kB\nRssAnon:\t5\n", Status{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tt.status))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseStatus error = %v, want error: %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseStatus = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestParseStatusSelf reads this test process's own status: the kernel
// writes RssAnon (since Linux 4.5) and it is part of VmRSS, which also holds
// the file-backed pages of the test binary.
func TestParseStatusSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseStatus(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Anon == 0 || got.Anon > got.RSS {
		t.Errorf("ParseStatus(/proc/self/status) = %+v, want 0 < RssAnon ≤ VmRSS", got)
	}
}

func TestParsePSS(t *testing.T) {
	rollup := "55d0c4a00000-7ffd1c5f3000 ---p 00000000 00:00 0                  [rollup]\nRss:               11932 kB\nPss:                6021 kB\nPss_Anon:           4980 kB\n"
	got, err := ParsePSS([]byte(rollup))
	if err != nil || got != 6021*1024 {
		t.Errorf("ParsePSS = %d, %v; want %d (Pss, not Pss_Anon)", got, err, 6021*1024)
	}
}

// fakeProc writes a /proc-like tree: 10 (master) → 11, 12 (workers) → 13,
// and an unrelated 20.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	procs := []struct{ pid, ppid, ut, st, rssKB, anonKB int }{
		{10, 1, 5, 5, 1000, 100}, {11, 10, 100, 50, 2000, 200}, {12, 10, 80, 20, 3000, 300}, {13, 12, 1, 0, 4, 1}, {20, 1, 999, 999, 99999, 9999},
	}
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(p.pid) + " (x) S " + strconv.Itoa(p.ppid) + " 0 0 0 -1 0 0 0 0 0 " + strconv.Itoa(p.ut) + " " + strconv.Itoa(p.st) + " 0 0 20 0 1 0 1 0 0\n"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		status := "Name:\tx\nVmRSS:\t" + strconv.Itoa(p.rssKB) + " kB\nRssAnon:\t" + strconv.Itoa(p.anonKB) + " kB\n"
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestSampleTreeSumsDescendants(t *testing.T) {
	r := Reader{Root: fakeProc(t)}
	s, err := r.SampleTree(10)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{CPU: (10 + 150 + 100 + 1) * ClockTick, RSS: (1000 + 2000 + 3000 + 4) << 10, Anon: (100 + 200 + 300 + 1) << 10, Procs: 4}
	if s != want {
		t.Errorf("SampleTree(10) = %+v, want %+v (process 20 is not in the tree)", s, want)
	}
	if _, err := r.Sample([]int{404}); err == nil {
		t.Error("Sample of a vanished process succeeded, want an error")
	}
}

func TestTreeCPUCountsReapedChildren(t *testing.T) {
	r := Reader{Root: fakeProc(t)}
	// fakeProc's stat lines have no cutime/cstime beyond what it writes:
	// 10+150+100+1 ticks of utime+stime, plus zeros.
	got, err := r.TreeCPU(10)
	if want := 261 * ClockTick; err != nil || got != want {
		t.Errorf("TreeCPU(10) = %v, %v; want %v", got, err, want)
	}
}

func TestSampleSelf(t *testing.T) {
	s, err := Reader{}.Sample([]int{os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS == 0 || s.Anon == 0 || s.Anon > s.RSS || s.PSS == 0 || s.Procs != 1 {
		t.Errorf("Sample(self) = %+v, want a resident set with 0 < RssAnon ≤ VmRSS and one process", s)
	}
}

func TestParseBusy(t *testing.T) {
	stat := "cpu  100 5 50 10000 30 1 2 3 0 0\ncpu0 50 2 25 5000 15 0 1 1 0 0\n"
	got, err := ParseBusy([]byte(stat))
	if want := (100 + 5 + 50 + 1 + 2 + 3) * ClockTick; err != nil || got != want {
		t.Errorf("ParseBusy = %v, %v; want %v (idle and iowait left out)", got, err, want)
	}
	if _, err := ParseBusy([]byte("intr 1 2 3\n")); err == nil {
		t.Error("ParseBusy accepted a file without the cpu line")
	}
}

func TestParseSelfTimesAddsWaitedChildren(t *testing.T) {
	line := "99 (procmesh-bench) S 1 99 99 0 -1 0 0 0 0 0 10 20 300 400 20 0 9 0 5 0 0\n"
	got, err := parseSelfTimes([]byte(line))
	if want := 730 * ClockTick; err != nil || got != want {
		t.Errorf("parseSelfTimes = %v, %v; want %v", got, err, want)
	}
}
