package echo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// acceptTCP accepts connections until the listener is closed. Every
// connection is tracked before its goroutine starts, so Close, which runs
// after acceptTCP returned, can close and wait for all of them.
func (s *Server) acceptTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.opts.Logger.Warn().Err(err).Msg("echo: accept")
			if s.pause(50 * time.Millisecond) {
				return
			}
			continue
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.connWG.Add(1)
		go s.serveTCP(c, s.nextConn.Add(1))
	}
}

// pause waits d after a failed Accept (file descriptors exhausted) and
// reports whether the server was closed meanwhile.
func (s *Server) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-s.closing:
		return true
	}
}

func (s *Server) serveTCP(c net.Conn, connID uint64) {
	defer s.connWG.Done()
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	log := s.opts.Logger.With().Uint64("conn", connID).Str("remote", c.RemoteAddr().String()).Logger()
	tc, ok := c.(*tls.Conn)
	if !ok {
		log.Error().Msgf("echo: %T is not a TLS connection", c)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		log.Debug().Err(err).Msg("echo: TLS handshake failed")
		return
	}
	cs := tc.ConnectionState()
	id, err := peerID(cs)
	if err != nil {
		log.Error().Err(err).Msg("echo: client ID")
		return
	}
	s.record(Record{SPIFFEID: id, ConnID: connID, RemoteAddr: c.RemoteAddr().String(), Resumed: cs.DidResume, Proto: "tcp"})
	log = log.With().Str("spiffe_id", id.String()).Logger()
	if _, err := fmt.Fprintf(tc, "spiffe_id=%s\n", id); err != nil {
		log.Debug().Err(err).Msg("echo: write ID line")
		return
	}
	n, err := io.Copy(tc, tc)
	if err != nil {
		log.Debug().Err(err).Int64("bytes", n).Msg("echo: copy")
		return
	}
	if err := tc.CloseWrite(); err != nil {
		log.Debug().Err(err).Msg("echo: half-close")
	}
	log.Debug().Int64("bytes", n).Msg("echo: connection done")
}
