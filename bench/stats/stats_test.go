package stats

import (
	"math"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	ten := make([]time.Duration, 10)
	for i := range ten {
		ten[i] = time.Duration(i+1) * time.Millisecond // 1..10 ms
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", []time.Duration{7}, 99, 7},
		{"p50 of 10", ten, 50, 5 * time.Millisecond},
		{"p90 of 10", ten, 90, 9 * time.Millisecond},
		{"p99 of 10 is the max", ten, 99, 10 * time.Millisecond},
		{"p100", ten, 100, 10 * time.Millisecond},
		{"tiny p is the min", ten, 0.1, 1 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Microsecond},
		{"p99.9 of 100", hundred, 99.9, 100 * time.Microsecond},
		{"p50 of 100", hundred, 50, 50 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestPercentilesSortsInPlace(t *testing.T) {
	s := []time.Duration{5, 1, 4, 2, 3}
	got := Percentiles(s, 20, 60, 100)
	want := []time.Duration{1, 3, 5}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Percentiles = %v, want %v", got, want)
		}
	}
	if s[0] != 1 || s[4] != 5 {
		t.Errorf("samples not sorted in place: %v", s)
	}
}

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		in   []float64
		want Summary
		ok   bool
	}{
		{"none", nil, Summary{}, false},
		{"all NaN", []float64{nan, nan}, Summary{}, false},
		{"odd", []float64{3, 1, 2}, Summary{Min: 1, Median: 2, Max: 3, N: 3}, true},
		{"even takes the mean of the middle", []float64{4, 1, 3, 2}, Summary{Min: 1, Median: 2.5, Max: 4, N: 4}, true},
		{"NaN left out", []float64{nan, 5, 1}, Summary{Min: 1, Median: 3, Max: 5, N: 2}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Summarize(tt.in)
			if ok != tt.ok || got != tt.want {
				t.Errorf("Summarize(%v) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPairedRatiosAndDiffs(t *testing.T) {
	nan := math.NaN()
	a := []float64{10, 20, nan, 40, 50}
	b := []float64{5, 0, 3, 8}
	r := PairedRatios(a, b)
	if len(r) != 2 || r[0] != 2 || r[1] != 5 {
		t.Errorf("PairedRatios = %v, want [2 5] (zero divisor, NaN and unpaired left out)", r)
	}
	d := PairedDiffs(a, b)
	if len(d) != 4 || d[0] != 5 || d[1] != 20 || !math.IsNaN(d[2]) || d[3] != 32 {
		t.Errorf("PairedDiffs = %v, want [5 20 NaN 32] (trial 3 failed, trial 5 unpaired)", d)
	}
}
