package units

import (
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for v, want := range map[int64]string{0: "0", 100: "100", 61440: "60KiB", 1 << 20: "1MiB", 3 << 40: "3TiB", 1500: "1500"} {
		if got := FormatSize(v); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", v, got, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 5 * time.Minute: "5m", 10 * time.Second: "10s", 400 * time.Millisecond: "400ms", 0: "0h"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
