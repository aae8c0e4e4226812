package tlsconf

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// connRecord is what recServer saw of one connection.
type connRecord struct {
	id      spiffeid.ID
	serial  string
	resumed bool
}

// recServer is a real go-spiffe mTLS upstream on 127.0.0.1 that records the
// client identity of every connection, answers "ok\n" and closes.
type recServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	recs []connRecord
}

func startRecServer(t *testing.T, cfg *tls.Config) *recServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &recServer{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer func() { _ = c.Close() }()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				cs := tc.ConnectionState()
				id, _ := x509svid.IDFromCert(cs.PeerCertificates[0])
				r.mu.Lock()
				r.recs = append(r.recs, connRecord{id: id, serial: cs.PeerCertificates[0].SerialNumber.String(), resumed: cs.DidResume})
				r.mu.Unlock()
				_, _ = tc.Write([]byte("ok\n"))
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); r.wg.Wait() })
	return r
}

func (r *recServer) records() []connRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]connRecord(nil), r.recs...)
}

// dial makes one connection with cfg and reads the server's answer, which
// also processes any session ticket sent before it.
func (r *recServer) dial(cfg *tls.Config) (tls.ConnectionState, error) {
	d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", r.ln.Addr().String())
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer func() { _ = c.Close() }()
	tc := c.(*tls.Conn)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(tc).ReadString('\n'); err != nil {
		return tls.ConnectionState{}, err
	}
	return tc.ConnectionState(), nil
}
