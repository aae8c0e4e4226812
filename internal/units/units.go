// Package units writes sizes and durations the way procmesh's config file
// takes them (60KiB, 5m), so config errors and proxy refusals quote values
// an operator can paste back into the file. Parsing stays in package
// config, which owns the file's syntax.
package units

import (
	"fmt"
	"strconv"
	"time"
)

// FormatSize writes a byte count with the largest binary unit that divides
// it: 60KiB, 1MiB, 100.
func FormatSize(v int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.mult == 0 {
			return strconv.FormatInt(v/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(v, 10)
}

// FormatDuration writes a round duration in its largest whole unit (1h,
// 5m, 10s) and any other as time.Duration does (400ms).
func FormatDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
