package suite

import (
	"fmt"
	"io"
	"time"

	"github.com/procmesh/procmesh/bench/report"
)

// step is one measurement of the plan.
type step struct {
	label string
	run   func() string // returns a short result for the progress line
}

// progress prints one line per step: position, elapsed time, an estimate
// of what is left, the step and its result.
type progress struct {
	w     io.Writer
	start time.Time
	total int
	done  int
}

func (p *progress) run(s step) {
	t0 := time.Now()
	fmt.Fprintf(p.w, "[%3d/%3d %6s] %s ... ", p.done+1, p.total, round(time.Since(p.start)), s.label)
	res := s.run()
	p.done++
	el := time.Since(p.start)
	eta := ""
	if p.done < p.total {
		eta = fmt.Sprintf(" (about %s left)", round(time.Duration(float64(el)/float64(p.done)*float64(p.total-p.done))))
	}
	fmt.Fprintf(p.w, "%s [%s]%s\n", res, round(time.Since(t0)), eta)
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// plan is one scenario: its figures, the steps that measure them, and what
// to compute once they all ran.
type plan struct {
	sc     *report.Scenario
	steps  []step
	finish func()
}
