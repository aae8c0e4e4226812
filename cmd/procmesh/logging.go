package main

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/internal/logbuf"
)

// logOutput is where procmesh's log and audit lines go: log.file (or
// stderr) behind a buffer that batches lines for log.flush_interval.
type logOutput struct {
	buf  *logbuf.Writer
	file *logFile // nil when logging to stderr
}

// openLog opens the log the config names. Write failures the logger cannot
// report (a timed flush) are printed on stderr.
func openLog(c config.Log, stderr io.Writer) (*logOutput, error) {
	out := &logOutput{}
	dst := stderr
	if c.File != "" {
		f, err := openLogFile(c.File)
		if err != nil {
			return nil, err
		}
		out.file = &logFile{path: c.File, f: f}
		dst = out.file
	}
	out.buf = logbuf.New(dst, logbuf.Options{
		FlushInterval: c.FlushInterval,
		OnError: func(err error) {
			fmt.Fprintf(stderr, "procmesh: %v; those log and audit lines are lost: check log.file (disk full? removed?)\n", err)
		},
	})
	return out, nil
}

// logger returns the JSON logger writing to out at level.
func (o *logOutput) logger(level zerolog.Level) zerolog.Logger {
	return zerolog.New(o.buf).Level(level).With().Timestamp().Logger()
}

// Flush writes the buffered lines.
func (o *logOutput) Flush() error { return o.buf.Flush() }

// Reopen writes the buffered lines to the current file and then opens
// log.file again by its path, so that a rotated file (renamed by
// logrotate, which then sends SIGHUP) is left alone and a new one is
// created. Logging to stderr has nothing to reopen.
func (o *logOutput) Reopen() error {
	if err := o.buf.Flush(); err != nil {
		return err
	}
	if o.file == nil {
		return nil
	}
	return o.file.reopen()
}

// Close writes the buffered lines and closes log.file.
func (o *logOutput) Close() error {
	err := o.buf.Close()
	if o.file != nil {
		if cerr := o.file.close(); err == nil {
			err = cerr
		}
	}
	return err
}

// logFile is log.file, opened for appending (mode 0600), that can be
// reopened by path while lines are being written.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("procmesh: open log.file: %w", err)
	}
	return f, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// reopen switches to a newly opened file at the path; if that fails the
// old file is kept.
func (l *logFile) reopen() error {
	f, err := openLogFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

func (l *logFile) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
