package suite

import (
	"math"

	"github.com/procmesh/procmesh/bench/procstat"
)

// cpuMeter charges CPU time to a contestant's processes over a run.
type cpuMeter struct {
	e      *env
	pids   []int
	before procstat.Sample
	ok     bool
}

func (e *env) startCPU(c *contestant) *cpuMeter {
	m := &cpuMeter{e: e, pids: e.pids(c)}
	if len(m.pids) == 0 {
		return m
	}
	s, err := e.rd.Sample(m.pids)
	m.before, m.ok = s, err == nil
	return m
}

// perRequest returns the CPU microseconds per request since start, or NaN
// when there is no proxy process (direct) or nothing was sampled.
func (m *cpuMeter) perRequest(requests int64) float64 {
	if !m.ok || requests <= 0 {
		return math.NaN()
	}
	after, err := m.e.rd.Sample(m.pids)
	if err != nil {
		return math.NaN()
	}
	return float64((after.CPU - m.before.CPU).Microseconds()) / float64(requests)
}
