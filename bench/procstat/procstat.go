// Package procstat reads what the suite charges to a proxy from /proc: CPU
// time (utime+stime of /proc/PID/stat, every thread of the process, dead
// ones included) and resident memory (VmRSS and RssAnon of
// /proc/PID/status, Pss of /proc/PID/smaps_rollup), summed over a process
// and all its descendants (nginx's master and workers).
//
// It leaves out sampling schedules and arithmetic (package suite and stats).
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture (the kernel exports it as a constant to
// user space whatever CONFIG_HZ is).
const ClockTick = 10 * time.Millisecond

// Stat is what the suite uses of one /proc/PID/stat line.
type Stat struct {
	PID, PPID    int
	Comm         string
	UTime, STime uint64 // clock ticks
}

// CPU returns utime+stime as a duration.
func (s Stat) CPU() time.Duration { return time.Duration(s.UTime+s.STime) * ClockTick }

// ParseStat parses a /proc/PID/stat line. The command name is in
// parentheses and may itself hold spaces and parentheses, so the fields
// after it are found from the last ')'.
func ParseStat(line []byte) (Stat, error) {
	open := bytes.IndexByte(line, '(')
	closing := bytes.LastIndexByte(line, ')')
	if open < 1 || closing < open {
		return Stat{}, errors.New("procstat: stat: no (comm) field")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(line[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("procstat: stat: pid: %w", err)
	}
	rest := strings.Fields(string(line[closing+1:]))
	// rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(rest) < 13 {
		return Stat{}, fmt.Errorf("procstat: stat: %d fields after comm, want at least 13", len(rest))
	}
	st := Stat{PID: pid, Comm: string(line[open+1 : closing])}
	if st.PPID, err = strconv.Atoi(rest[1]); err != nil {
		return Stat{}, fmt.Errorf("procstat: stat: ppid: %w", err)
	}
	if st.UTime, err = strconv.ParseUint(rest[11], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("procstat: stat: utime: %w", err)
	}
	if st.STime, err = strconv.ParseUint(rest[12], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("procstat: stat: stime: %w", err)
	}
	return st, nil
}

// Status is the resident memory of one /proc/PID/status, in bytes.
type Status struct {
	RSS  uint64 // VmRSS: every resident page the process maps
	Anon uint64 // RssAnon: the anonymous part (heap, stacks), not file-backed or shmem
}

// ParseStatus returns VmRSS and RssAnon from the text of /proc/PID/status.
// A missing line (a zombie, a kernel thread) is 0.
func ParseStatus(status []byte) (Status, error) {
	rss, err := parseKB(status, "VmRSS:")
	if err != nil {
		return Status{}, err
	}
	anon, err := parseKB(status, "RssAnon:")
	if err != nil {
		return Status{}, err
	}
	return Status{RSS: rss, Anon: anon}, nil
}

// ParsePSS returns Pss, in bytes, from the text of /proc/PID/smaps_rollup:
// resident memory with each shared page divided among the processes that
// map it, which is what a multi-process server (nginx) really costs.
func ParsePSS(rollup []byte) (uint64, error) { return parseKB(rollup, "Pss:") }

// parseKB returns the "NAME   N kB" field of a /proc text file, in bytes;
// 0 if the field is absent.
func parseKB(text []byte, name string) (uint64, error) {
	for line := range bytes.SplitSeq(text, []byte{'\n'}) {
		v, ok := bytes.CutPrefix(line, []byte(name))
		if !ok {
			continue
		}
		f := strings.Fields(string(v))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("procstat: malformed %s line %q", name, line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: %s %w", name, err)
		}
		return kb << 10, nil
	}
	return 0, nil
}

// Sample is the CPU time and resident memory of a process tree at one time.
type Sample struct {
	CPU   time.Duration
	RSS   uint64 // bytes, VmRSS summed
	Anon  uint64 // bytes, RssAnon summed (the anonymous part of RSS)
	PSS   uint64 // bytes, Pss summed (0 where smaps_rollup is missing)
	Procs int    // processes summed
}

// Reader reads /proc under Root (default "/proc").
type Reader struct{ Root string }

func (r Reader) root() string {
	if r.Root == "" {
		return "/proc"
	}
	return r.Root
}

// ReadStat reads /proc/PID/stat.
func (r Reader) ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join(r.root(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, fmt.Errorf("procstat: %w", err)
	}
	return ParseStat(b)
}

// Tree returns pid and every descendant of it alive now.
func (r Reader) Tree(pid int) ([]int, error) {
	ents, err := os.ReadDir(r.root())
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	children := make(map[int][]int)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := r.ReadStat(p)
		if err != nil {
			continue // exited while we looked
		}
		children[st.PPID] = append(children[st.PPID], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// Sample sums CPU time, RSS, RssAnon and PSS over pids. A process that exited meanwhile is
// skipped; if none could be read it is an error.
func (r Reader) Sample(pids []int) (Sample, error) {
	var s Sample
	var lastErr error
	for _, pid := range pids {
		st, err := r.ReadStat(pid)
		if err != nil {
			lastErr = err
			continue
		}
		status, err := os.ReadFile(filepath.Join(r.root(), strconv.Itoa(pid), "status"))
		if err != nil {
			lastErr = err
			continue
		}
		mem, err := ParseStatus(status)
		if err != nil {
			return Sample{}, err
		}
		if rollup, err := os.ReadFile(filepath.Join(r.root(), strconv.Itoa(pid), "smaps_rollup")); err == nil {
			pss, err := ParsePSS(rollup)
			if err != nil {
				return Sample{}, err
			}
			s.PSS += pss
		}
		s.CPU += st.CPU()
		s.RSS += mem.RSS
		s.Anon += mem.Anon
		s.Procs++
	}
	if s.Procs == 0 {
		if lastErr == nil {
			lastErr = errors.New("procstat: no process to sample")
		}
		return Sample{}, lastErr
	}
	return s, nil
}

// SampleTree samples pid and its descendants.
func (r Reader) SampleTree(pid int) (Sample, error) {
	pids, err := r.Tree(pid)
	if err != nil {
		return Sample{}, err
	}
	return r.Sample(pids)
}

// TreeCPU returns the CPU time of pid and everything it started: for pid
// and each live descendant, utime+stime+cutime+cstime of /proc/PID/stat
// (cutime and cstime hold children that exited and were waited for). A
// child moves from "live" to its parent's cutime when it is reaped, so the
// sum only grows.
func (r Reader) TreeCPU(pid int) (time.Duration, error) {
	pids, err := r.Tree(pid)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for i, p := range pids {
		b, err := os.ReadFile(filepath.Join(r.root(), strconv.Itoa(p), "stat"))
		if err != nil {
			if i == 0 {
				return 0, fmt.Errorf("procstat: %w", err)
			}
			continue // exited meanwhile
		}
		d, err := parseSelfTimes(b)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// parseSelfTimes returns utime+stime+cutime+cstime of a stat line.
func parseSelfTimes(line []byte) (time.Duration, error) {
	closing := bytes.LastIndexByte(line, ')')
	if closing < 0 {
		return 0, errors.New("procstat: stat: no (comm) field")
	}
	rest := strings.Fields(string(line[closing+1:]))
	if len(rest) < 15 {
		return 0, errors.New("procstat: stat: too few fields")
	}
	var sum uint64
	for _, f := range rest[11:15] { // utime stime cutime cstime
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: stat: %w", err)
		}
		sum += uint64(max(v, 0))
	}
	return time.Duration(sum) * ClockTick, nil
}

// Busy returns the CPU time all CPUs spent on anything but idle and iowait
// since boot, from the first line of /proc/stat.
func (r Reader) Busy() (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(r.root(), "stat"))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	return ParseBusy(b)
}

// ParseBusy reads the aggregate "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal (guest time is already in user).
func ParseBusy(stat []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(stat, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("procstat: /proc/stat: no aggregate cpu line")
	}
	var busy uint64
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("procstat: /proc/stat: %w", err)
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return time.Duration(busy) * ClockTick, nil
}
