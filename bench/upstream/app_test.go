package upstream

import (
	"bufio"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeAppKeepAlive connects to the app's Unix socket in plain text
// and gets two fixed responses on one connection.
func TestServeAppKeepAlive(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	a, err := ServeApp(sock, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	want := string(Response(16))
	br := bufio.NewReader(c)
	for i := range 2 {
		if _, err := io.WriteString(c, "GET /1k HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("response %d: %v", i+1, err)
		}
		if string(got) != want || !strings.HasPrefix(string(got), "HTTP/1.1 200 OK\r\n") {
			t.Errorf("response %d = %q, want %q", i+1, got, want)
		}
	}
}
