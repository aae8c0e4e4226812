// Package defaults is procmesh's one rule for option defaults, field by
// field (quic-go's populateConfig): Or takes the default for zero and keeps
// a negative value, which OffIfNegative then turns into 0, "off";
// PositiveOr takes the default for zero and negative values alike, for
// settings that cannot be off.
package defaults

import "time"

// Or returns d when v is zero, else v (a negative v is kept: "off").
func Or[T int | int64 | time.Duration](v, d T) T {
	if v == 0 {
		return d
	}
	return v
}

// OffIfNegative turns a negative v into 0, "off".
func OffIfNegative[T int | int64 | time.Duration](v T) T { return max(v, 0) }

// PositiveOr returns d when v is zero or negative, else v.
func PositiveOr[T int | int64 | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// On reports whether a duration limit is in force (zero or negative: off).
func On(d time.Duration) bool { return d > 0 }
