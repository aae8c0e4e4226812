package upstream

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// App is the local service of the inbound scenario: the upstream's
// hand-written keep-alive HTTP/1.1 responder, in plain text on a Unix
// socket, as an application behind an mTLS terminator would listen.
type App struct {
	l net.Listener
}

// ServeApp listens on the Unix socket path (mode 0666: every terminator,
// whatever user its workers run as, may connect) and answers every request
// with a body of bodySize bytes until Close.
func ServeApp(path string, bodySize int) (*App, error) {
	os.Remove(path) // a stale socket from an earlier run
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("upstream: app: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("upstream: app: %w", err)
	}
	resp := Response(bodySize)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go serveH1(c, resp, 5*time.Minute)
		}
	}()
	return &App{l: l}, nil
}

// Close stops listening; open connections end when their clients close.
func (a *App) Close() error { return a.l.Close() }
