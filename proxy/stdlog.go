package proxy

import (
	"bytes"
	"log"

	"github.com/rs/zerolog"
)

// newStdLogger adapts a zerolog.Logger for net/http's ErrorLog, so server
// errors (TLS handshakes, malformed requests) land in the same JSON stream.
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Warn().Str("component", "http").Msg(string(bytes.TrimSpace(p)))
	return len(p), nil
}
