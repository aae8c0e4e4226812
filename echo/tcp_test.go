package echo

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

func TestTCP_EchoesAfterIDLine(t *testing.T) {
	p := newPKI(t)
	srv := p.start(t, ModeTCP, nil)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.Addr(), p.clientConfig(t, idBilling))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || line != "spiffe_id=spiffe://example.org/billing\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	payload := bytes.Repeat([]byte("procmesh "), 10000)
	go func() {
		_, _ = conn.Write(payload)
		_ = conn.CloseWrite()
	}()
	got, err := io.ReadAll(br) // ends at the server's half-close
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echoed %d bytes (%v), want the %d sent", len(got), err, len(payload))
	}
	recs := srv.Records()
	if len(recs) != 1 || recs[0].SPIFFEID != idBilling || recs[0].Proto != "tcp" || recs[0].ConnID != 1 {
		t.Fatalf("records %+v", recs)
	}
}
