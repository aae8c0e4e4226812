package inbound_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/procmesh/procmesh/inbound"
	"github.com/procmesh/procmesh/policy"
	"github.com/procmesh/procmesh/proxy"
	"github.com/procmesh/procmesh/tlsconf"
)

// TestInboundTCPProxyV2: a tcp listener writes a PROXY v2 header whose TLV
// 0xD0 is the caller's SPIFFE ID, then the caller's bytes.
func TestInboundTCPProxyV2(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "echo")
	e.apply(e.listener("db", a.sock, "tcp", policy.Rule{From: []spiffeid.ID{frontID}}))
	c, err := tls.Dial("tcp", e.addr("db"), e.clientTLS(e.svid(frontID), appID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	id := parseProxyV2(t, got)
	if id.tlv != frontID.String() || !bytes.HasSuffix(got, []byte("hello")) {
		t.Fatalf("service got TLV %q and %q", id.tlv, got)
	}
	e.auditLines(`"event":"inbound_connection"`, `"peer_id":"spiffe://example.org/frontend"`, `"decision":"allow"`, `"bytes_up":5`)
}

type proxyV2 struct{ tlv string }

// parseProxyV2 reads a PROXY v2 header from the start of b.
func parseProxyV2(t *testing.T, b []byte) proxyV2 {
	t.Helper()
	sig := "\r\n\r\n\x00\r\nQUIT\n"
	if len(b) < 16 || string(b[:12]) != sig || b[12] != 0x21 || b[13] != 0x11 {
		t.Fatalf("no PROXY v2 header (PROXY, TCP4): %q", b)
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	body := b[16 : 16+n]
	tlvs := body[12:] // IPv4: 4+4+2+2
	var out proxyV2
	for len(tlvs) >= 3 {
		typ, l := tlvs[0], int(binary.BigEndian.Uint16(tlvs[1:3]))
		if typ == inbound.TLVSPIFFEID {
			out.tlv = string(tlvs[3 : 3+l])
		}
		tlvs = tlvs[3+l:]
	}
	return out
}

// TestInboundGRPC: gRPC over h2 with mTLS from the network, h2c to the
// service; the service sees the caller in X-Forwarded-Client-Cert, the
// policy's path rule applies to the method.
func TestInboundGRPC(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "grpc")
	e.apply(e.listener("rpc", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}, Paths: []string{"/grpc.testing.TestService/UnaryCall"}}))
	conn, err := grpc.NewClient(e.addr("rpc"), grpc.WithTransportCredentials(credentials.NewTLS(e.clientTLS(e.svid(frontID), appID, "h2"))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tr metadata.MD
	resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}, grpc.Trailer(&tr))
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetPayload().GetBody()) != "ping" || !strings.Contains(strings.Join(tr.Get("x-xfcc"), ""), "URI="+frontID.String()) {
		t.Fatalf("payload %q, service saw XFCC %q", resp.GetPayload().GetBody(), tr.Get("x-xfcc"))
	}
	if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}); err == nil || !strings.Contains(err.Error(), "PermissionDenied") && !strings.Contains(err.Error(), "403") {
		t.Fatalf("EmptyCall, which no rule allows: %v", err)
	}
}

// TestInboundReload: Apply retunes a listener's policy in place, closing
// the tcp connections it no longer allows, and removes listeners.
func TestInboundReload(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "echo")
	l := e.listener("db", a.sock, "tcp", policy.Rule{From: []spiffeid.ID{frontID, adminID}})
	e.apply(l)
	addr := e.addr("db")
	c, err := tls.Dial("tcp", addr, e.clientTLS(e.svid(frontID), appID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	// Only admin now: frontend's open connection is closed.
	l2 := e.listener("db", a.sock, "tcp", policy.Rule{From: []spiffeid.ID{adminID}})
	l2.Listen = l.Listen
	e.apply(l2)
	if e.addr("db") != addr {
		t.Fatalf("retune moved the listener to %s", e.addr("db"))
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil && strings.Contains(err.Error(), "timeout") {
		t.Fatal("a connection the new policy refuses stayed open")
	}
	e.auditLines(`"event":"inbound_connection"`, "no longer allows")
	// Removed: the address stops accepting.
	e.apply()
	if e.srv.Addr("db") != nil {
		t.Fatal("listener still there after removal")
	}
	if c, err := tls.Dial("tcp", addr, e.clientTLS(e.svid(adminID), appID)); err == nil {
		c.Close()
		t.Fatal("removed listener still accepts")
	}
}

// TestInboundDrain: Shutdown stops accepting and lets a request in flight
// finish.
func TestInboundDrain(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http1", policy.Rule{From: []spiffeid.ID{frontID}}))
	addr := e.addr("orders")
	c := e.httpClient(e.svid(frontID), false)
	got := make(chan int, 1)
	go func() {
		resp, err := c.Get("https://" + addr + "/slow")
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	waitFor(t, func() bool { return len(a.out.Lines("request GET /slow")) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- e.srv.Shutdown(ctx) }()
	waitFor(t, func() bool {
		c, err := tls.Dial("tcp", addr, e.clientTLS(e.svid(frontID), appID))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if code := <-got; code != 200 {
		t.Fatalf("request in flight at shutdown: %d", code)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestInboundRename: a reload that renames a listener (or changes its
// protocol) on the same address takes the address over.
func TestInboundRename(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	a := startApp(t, bins.app, "http")
	l := e.listener("old", a.sock, "http1", policy.Rule{From: []spiffeid.ID{frontID}})
	e.apply(l)
	renamed := e.listener("new", a.sock, "http2", policy.Rule{From: []spiffeid.ID{frontID}})
	renamed.Listen = l.Listen
	e.apply(renamed)
	if e.srv.Addr("old") != nil || e.addr("new") != l.Listen {
		t.Fatalf("after the rename: old %v, new %v", e.srv.Addr("old"), e.srv.Addr("new"))
	}
	if _, resp := getSeen(t, e.httpClient(e.svid(frontID), true), "https://"+l.Listen+"/", nil); resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("renamed listener: %s %s", resp.Proto, resp.Status)
	}
}

// TestInboundFederation: a caller of another trust domain whose bundle the
// Source has is verified and authorised by its own ID; without the bundle
// it is refused in the handshake.
func TestInboundFederation(t *testing.T) {
	e := newEnv(t, proxy.Limits{})
	partnerTD := spiffeid.RequireTrustDomainFromString("partner.test")
	partnerCA, err := tlsconf.LoadOrCreateCA(tlsconf.CAOptions{TrustDomain: partnerTD, StateDir: t.TempDir() + "/partner"})
	if err != nil {
		t.Fatal(err)
	}
	web := spiffeid.RequireFromPath(partnerTD, "/web")
	svid, err := partnerCA.Mint(web)
	if err != nil {
		t.Fatal(err)
	}
	a := startApp(t, bins.app, "http")
	e.apply(e.listener("orders", a.sock, "http1", policy.Rule{From: []spiffeid.ID{web}}))
	url := "https://" + e.addr("orders") + "/"
	if resp, err := e.httpClient(svid, false).Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("a caller of a trust domain without a bundle was served")
	}
	e.bundles.Add(partnerCA.Bundle())
	s, resp := getSeen(t, e.httpClient(svid, false), url, nil)
	if resp.StatusCode != 200 || len(s.XFCC) != 1 || !strings.HasSuffix(s.XFCC[0], ";URI=spiffe://partner.test/web") {
		t.Fatalf("federated caller: %s, app saw %q", resp.Status, s.XFCC)
	}
}
