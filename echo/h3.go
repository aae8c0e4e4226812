package echo

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// h3Server serves the HTTP handler over QUIC. Every QUIC connection gets
// its own ConnID, from the same counter as the TCP connections.
type h3Server struct {
	srv  *http3.Server
	pc   net.PacketConn
	done chan struct{}
}

// startHTTP3 listens on UDP at the TCP listener's address and serves.
func (s *Server) startHTTP3(addr *net.TCPAddr, cfg *tls.Config) (*h3Server, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: addr.IP, Port: addr.Port, Zone: addr.Zone})
	if err != nil {
		return nil, fmt.Errorf("echo: listen for HTTP/3: %w", err)
	}
	conf := cfg.Clone()
	conf.NextProtos = []string{http3.NextProtoH3}
	h := &h3Server{pc: pc, done: make(chan struct{})}
	h.srv = &http3.Server{
		Handler:        http.HandlerFunc(s.serveHTTP),
		TLSConfig:      conf,
		MaxHeaderBytes: 1 << 20,
		IdleTimeout:    2 * handshakeTimeout,
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout: handshakeTimeout,
			MaxIdleTimeout:       2 * handshakeTimeout,
			MaxIncomingStreams:   100,
		},
		ConnContext: func(ctx context.Context, _ *quic.Conn) context.Context {
			return context.WithValue(ctx, connIDKey{}, s.nextConn.Add(1))
		},
	}
	go func() {
		defer close(h.done)
		// Serve returns http.ErrServerClosed after Close.
		_ = h.srv.Serve(pc)
	}()
	return h, nil
}

func (h *h3Server) close() {
	_ = h.srv.Close()
	_ = h.pc.Close()
	<-h.done
}
