package logbuf

import "github.com/rs/zerolog"

var _ zerolog.LevelWriter = (*Writer)(nil)

// WriteLevel makes Writer a zerolog.LevelWriter: lines at warn, error,
// fatal and panic level are written at once (with what was buffered
// before them), so procmesh's own problems reach the log without waiting
// for the flush interval; other lines — info, debug, and audit lines,
// which have no level — are batched.
func (w *Writer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l >= zerolog.WarnLevel && l <= zerolog.PanicLevel {
		return w.WriteNow(p)
	}
	return w.Write(p)
}
