package proxy_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/websocket"

	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
)

// TestThreat_F6_NewStateEndsWebSocket: a WebSocket session is a request in
// progress; a state whose policy no longer allows it ends it at once.
func TestThreat_F6_NewStateEndsWebSocket(t *testing.T) {
	e := newEnv(t, envOptions{defaultAllow: true})
	e.selfAsA()
	up := e.startUpstream(wsUpstream())
	e.srv.SetState(e.statePlus(upRoute("ws", up)))
	ws, err := wsDial(e.sock, "ws://ws.test/f6")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, _, err := wsHello(ws, "before"); err != nil {
		t.Fatal(err)
	}

	pol, err := policy.New(false, []policy.Rule{{Name: "b-only", From: []spiffeid.ID{idB}, To: []string{"ws"}}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := proxy.NewState([]proxy.Route{upRoute("ws", up)}, pol)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetState(st)
	ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	var msg string
	err = websocket.Message.Receive(ws, &msg)
	if err == nil {
		t.Fatalf("the WebSocket still delivered %q after policy stopped allowing it", msg)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the WebSocket was not ended by the new state")
	}
}
