package upstream

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestReadRequestHead(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		bodyLen   int64
		closeConn bool
		wantErr   bool
	}{
		{"keep-alive GET", "GET /1k HTTP/1.1\r\nHost: echo.bench.test\r\n\r\n", 0, false, false},
		{"body and close", "POST / HTTP/1.1\r\ncontent-length: 12\r\nConnection: Close\r\n\r\n", 12, true, false},
		{"chunked refused", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, false, true},
		{"negative length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 0, false, true},
		{"head too large", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", maxHeader) + "\r\n\r\n", 0, false, true},
		{"truncated", "GET / HTTP/1.1\r\nHost: x\r\n", 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, c, err := readRequestHead(bufio.NewReaderSize(strings.NewReader(tt.in), 4<<10))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && (n != tt.bodyLen || c != tt.closeConn) {
				t.Errorf("body %d close %v, want %d %v", n, c, tt.bodyLen, tt.closeConn)
			}
		})
	}
}

// TestServeH1KeepAlive sends two pipelined requests, the second with a body
// and Connection: close, and reads two fixed responses and end of stream.
func TestServeH1KeepAlive(t *testing.T) {
	client, server := net.Pipe()
	go serveH1(server, Response(16), time.Minute)
	go io.WriteString(client, "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
	want := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 16\r\n\r\n" + strings.Repeat("x", 16)
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want+want {
		t.Errorf("responses = %q, want two fixed responses then EOF", got)
	}
}

func TestServeL4AcknowledgesEveryMiB(t *testing.T) {
	client, server := net.Pipe()
	go serveL4(server)
	go func() {
		chunk := make([]byte, 64<<10)
		for range 3 * L4AckEvery / len(chunk) {
			client.Write(chunk)
		}
	}()
	var buf [8]byte
	for i := uint64(1); i <= 3; i++ {
		if _, err := io.ReadFull(client, buf[:]); err != nil {
			t.Fatal(err)
		}
		if got := binary.BigEndian.Uint64(buf[:]); got != i*L4AckEvery {
			t.Fatalf("acknowledgement %d = %d, want %d", i, got, i*L4AckEvery)
		}
	}
	client.Close()
}
