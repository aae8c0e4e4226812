// Package stats is the arithmetic of the benchmark suite: nearest-rank
// percentiles of latency samples, min/median/max summaries of repeated
// trials, and ratios paired trial by trial.
//
// It leaves out measuring anything (packages load and procstat do) and
// presenting results (package report).
package stats

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest sample such that at least p % of the samples are at
// or below it. It returns 0 for no samples. sorted must be ascending.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// Percentiles sorts samples in place and returns the percentiles ps of it.
func Percentiles(samples []time.Duration, ps ...float64) []time.Duration {
	slices.Sort(samples)
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		out[i] = Percentile(samples, p)
	}
	return out
}

// Summary is what the report shows of repeated trials of one figure.
type Summary struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the min, median and max of xs; NaN values (a trial
// that produced no figure) are left out. The median of an even count is the
// mean of the two middle values.
func Summarize(xs []float64) (Summary, bool) {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{}, false
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{Min: v[0], Median: med, Max: v[n-1], N: n}, true
}

// PairedRatios divides a by b trial by trial (a[i]/b[i]), which is how the
// suite compares contestants: each trial's samples were taken back to back,
// so slow drift of a shared machine cancels. Pairs with a NaN or a zero
// divisor are left out; only the first min(len(a), len(b)) pairs count.
func PairedRatios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, 0, n)
	for i := range n {
		if math.IsNaN(a[i]) || math.IsNaN(b[i]) || b[i] == 0 {
			continue
		}
		out = append(out, a[i]/b[i])
	}
	return out
}

// PairedDiffs subtracts b from a trial by trial (a[i]-b[i]): the added
// latency of a proxy over direct TLS in the same trial. A pair with a NaN
// gives NaN, so trial i stays trial i; only the first min(len(a), len(b))
// pairs count.
func PairedDiffs(a, b []float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, n)
	for i := range n {
		out[i] = a[i] - b[i] // NaN if either is
	}
	return out
}
