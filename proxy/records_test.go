package proxy_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procmesh/procmesh/proxy"
)

// recordTap is a TCP hop in front of an upstream that notes the length of
// every TLS record the client side sends.
type recordTap struct {
	addr string
	mu   sync.Mutex
	lens []int
}

func startRecordTap(t *testing.T, upstream string) *recordTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tap := &recordTap{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, up); c.Close() }()
			go func() {
				defer up.Close()
				br := bufio.NewReader(io.TeeReader(c, up))
				var hdr [5]byte
				for {
					if _, err := io.ReadFull(br, hdr[:]); err != nil {
						return
					}
					n := int(binary.BigEndian.Uint16(hdr[3:5]))
					tap.mu.Lock()
					tap.lens = append(tap.lens, n)
					tap.mu.Unlock()
					if _, err := br.Discard(n); err != nil {
						return
					}
				}
			}()
		}
	}()
	return tap
}

func (tap *recordTap) largest() int {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	m := 0
	for _, n := range tap.lens {
		m = max(m, n)
	}
	return m
}

// TestTLSRecordSizing: with UpstreamOptions.TLSMaxRecords the first 64 KiB
// of a tunnel go in full-size (16 KiB) records; with Go's dynamic sizing
// (the default) a connection's records start at about one TCP segment and
// grow by one segment a record, so none of the first 64 KiB is full-size.
func TestTLSRecordSizing(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	for _, maxRecords := range []bool{false, true} {
		tap := startRecordTap(t, e.raw.Addr())
		name := "dyn"
		if maxRecords {
			name = "max"
		}
		rt := proxy.Route{Name: "rec", Host: "rec.test", Upstream: tap.addr, ServerID: echoID, Protocol: proxy.ProtocolTCP}
		lp := e.startLimitedUp("rec-"+name, proxy.Limits{}, proxy.UpstreamOptions{TLSMaxRecords: maxRecords}, rt)
		c, err := net.Dial("unix", lp.sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "CONNECT rec.test:443 HTTP/1.1\r\nHost: rec.test:443\r\n\r\n")
		br := bufio.NewReader(c)
		status, _ := br.ReadString('\n')
		if !strings.Contains(status, " 200 ") {
			t.Fatalf("CONNECT: %q", status)
		}
		for line, _ := br.ReadString('\n'); line != "\r\n" && line != ""; line, _ = br.ReadString('\n') {
		}
		c.Write(make([]byte, 64<<10))
		if !eventually(5*time.Second, func() bool {
			tap.mu.Lock()
			total := 0
			for _, n := range tap.lens {
				total += n
			}
			tap.mu.Unlock()
			return total >= 64<<10
		}) {
			t.Fatalf("%s: the tunnel's bytes never reached the upstream", name)
		}
		c.Close()
		switch big := tap.largest(); {
		case maxRecords && big < 16<<10:
			t.Errorf("TLSMaxRecords: largest record %d bytes, want 16 KiB ones", big)
		case !maxRecords && big >= 16<<10:
			t.Errorf("dynamic sizing: a %d-byte record in the first 64 KiB, want records growing from one segment", big)
		}
	}
}
