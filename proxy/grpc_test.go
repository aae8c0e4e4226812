package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffegrpc/grpccredentials"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/procmesh/procmesh/proxy"
)

// grpcEcho is a gRPC upstream behind procmesh: go-spiffe mTLS credentials,
// grpc's own interop TestService. Every answer and the trailer
// "x-caller-id" carry the SPIFFE ID the server verified on the connection.
type grpcEcho struct {
	testgrpc.UnimplementedTestServiceServer
	mu       sync.Mutex
	calls    []grpcCall
	canceled chan string // method of a stream the server saw cancelled
}

type grpcCall struct {
	method, id, conn string
}

func (g *grpcEcho) caller(ctx context.Context, method string) string {
	id, ok := grpccredentials.PeerIDFromContext(ctx)
	p, _ := peer.FromContext(ctx)
	s := "no SPIFFE ID"
	if ok {
		s = id.String()
	}
	g.mu.Lock()
	g.calls = append(g.calls, grpcCall{method: method, id: s, conn: p.Addr.String()})
	g.mu.Unlock()
	return s
}

func (g *grpcEcho) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	id := g.caller(ctx, "unary")
	grpc.SetTrailer(ctx, metadata.Pairs("x-caller-id", id))
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testgrpc.SimpleResponse{Username: id, Payload: req.GetPayload()}, nil
}

// StreamingOutputCall sends one message per response parameter; with none
// it streams until the client cancels.
func (g *grpcEcho) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	ctx := stream.Context()
	id := g.caller(ctx, "server-stream")
	stream.SetTrailer(metadata.Pairs("x-caller-id", id))
	params := req.GetResponseParameters()
	for i := 0; len(params) == 0 || i < len(params); i++ {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(id)}}); err != nil {
			break
		}
		if len(params) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			g.canceled <- "server-stream " + id
			return ctx.Err()
		}
	}
	return nil
}

func (g *grpcEcho) FullDuplexCall(stream grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	ctx := stream.Context()
	id := g.caller(ctx, "bidi")
	stream.SetTrailer(metadata.Pairs("x-caller-id", id))
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				g.canceled <- "bidi " + id
			}
			return err
		}
		body := id + " " + string(req.GetPayload().GetBody())
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			return err
		}
	}
}

func (e *env) startGRPC() (*grpcEcho, string) {
	e.t.Helper()
	svid, err := e.upCA.Mint(echoID)
	if err != nil {
		e.t.Fatal(err)
	}
	g := &grpcEcho{canceled: make(chan string, 16)}
	s := grpc.NewServer(grpc.Creds(grpccredentials.MTLSServerCredentials(svid, x509bundle.NewSet(e.ca.Bundle()), tlsconfig.AuthorizeAny())))
	testgrpc.RegisterTestServiceServer(s, g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go s.Serve(l)
	e.t.Cleanup(s.Stop)
	return g, l.Addr().String()
}

// grpcResult is one call as the gRPC client in the child process saw it.
type grpcResult struct {
	Call    string   `json:"call"`
	Replies []string `json:"replies"` // caller IDs (and echoes) in the answers
	Trailer []string `json:"trailer"` // x-caller-id trailer values
	Code    string   `json:"code"`
	Msg     string   `json:"msg"`
}

// runGRPCClient is a grpc-go client with a unix: target and no transport
// security (procmesh adds the mTLS): unary, unary with an error status,
// server-streaming, bidi, and a cancelled stream.
func runGRPCClient() error {
	cc, err := grpc.NewClient("unix://"+os.Getenv("PM_SOCK"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(os.Getenv("PM_HOST")))
	if err != nil {
		return err
	}
	defer cc.Close()
	c := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := json.NewEncoder(os.Stdout)
	emit := func(r grpcResult, err error) {
		st := status.Convert(err)
		r.Code, r.Msg = st.Code().String(), st.Message()
		b, _ := json.Marshal(r)
		out.Encode(clientResult{Body: string(b)})
	}

	var tr metadata.MD
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hi")}}, grpc.Trailer(&tr))
	emit(grpcResult{Call: "unary", Replies: []string{resp.GetUsername()}, Trailer: tr.Get("x-caller-id")}, err)

	tr = nil
	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.PermissionDenied), Message: "not for you"}}, grpc.Trailer(&tr))
	emit(grpcResult{Call: "unary-status", Trailer: tr.Get("x-caller-id")}, err)

	ss, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: make([]*testgrpc.ResponseParameters, 3)})
	r := grpcResult{Call: "server-stream"}
	for err == nil {
		var m *testgrpc.StreamingOutputCallResponse
		if m, err = ss.Recv(); err == nil {
			r.Replies = append(r.Replies, string(m.GetPayload().GetBody()))
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
		r.Trailer = ss.Trailer().Get("x-caller-id")
	}
	emit(r, err)

	bs, err := c.FullDuplexCall(ctx)
	r = grpcResult{Call: "bidi"}
	for i := 0; err == nil && i < 3; i++ {
		if err = bs.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(fmt.Sprint(i))}}); err != nil {
			break
		}
		var m *testgrpc.StreamingOutputCallResponse
		if m, err = bs.Recv(); err == nil {
			r.Replies = append(r.Replies, string(m.GetPayload().GetBody()))
		}
	}
	if err == nil {
		bs.CloseSend()
		if _, err = bs.Recv(); errors.Is(err, io.EOF) {
			err = nil
			r.Trailer = bs.Trailer().Get("x-caller-id")
		}
	}
	emit(r, err)

	// A stream the client gives up on: the upstream must see it end.
	sctx, scancel := context.WithCancel(ctx)
	ss, err = c.StreamingOutputCall(sctx, &testgrpc.StreamingOutputCallRequest{})
	r = grpcResult{Call: "cancel"}
	for i := 0; err == nil && i < 2; i++ {
		var m *testgrpc.StreamingOutputCallResponse
		if m, err = ss.Recv(); err == nil {
			r.Replies = append(r.Replies, string(m.GetPayload().GetBody()))
		}
	}
	scancel()
	if err == nil {
		for err == nil {
			_, err = ss.Recv()
		}
	}
	emit(r, err)
	return nil
}

// TestGRPCOverUnixSocket: a grpc-go client dials procmesh's socket with a
// unix: target and no TLS; procmesh takes it as prior-knowledge h2c and
// calls a gRPC server over mTLS with the caller's SVID (route protocol
// http2). Unary and streaming calls, status and trailers, and cancellation
// all cross, and each caller arrives as itself.
func TestGRPCOverUnixSocket(t *testing.T) {
	t.Parallel()
	e, a, b := twoClients(t)
	g, addr := e.startGRPC()
	e.withRoutes(e.srv, route("grpc", proxy.ProtocolHTTP2, addr))

	for _, c := range []struct{ name, bin string }{{"a", a}, {"b", b}} {
		id := "spiffe://example.org/" + c.name
		rs, err := e.run(c.bin, -1, "grpc", "PM_HOST=grpc.test")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]grpcResult{}
		for _, r := range rs {
			var gr grpcResult
			if err := json.Unmarshal([]byte(r.Body), &gr); err != nil {
				t.Fatal(err)
			}
			got[gr.Call] = gr
		}
		want := map[string]grpcResult{
			"unary":         {Replies: []string{id}, Trailer: []string{id}, Code: "OK"},
			"unary-status":  {Trailer: []string{id}, Code: "PermissionDenied", Msg: "not for you"},
			"server-stream": {Replies: []string{id, id, id}, Trailer: []string{id}, Code: "OK"},
			"bidi":          {Replies: []string{id + " 0", id + " 1", id + " 2"}, Trailer: []string{id}, Code: "OK"},
			"cancel":        {Replies: []string{id, id}, Code: "Canceled", Msg: "context canceled"},
		}
		for call, w := range want {
			w.Call = call
			if fmt.Sprint(got[call]) != fmt.Sprint(w) {
				t.Errorf("client %s, %s: got %+v, want %+v", c.name, call, got[call], w)
			}
		}
		select {
		case s := <-g.canceled:
			if s != "server-stream "+id {
				t.Errorf("upstream saw %q cancelled, want %s's server stream", s, c.name)
			}
		case <-time.After(20 * time.Second): // a bound for a loaded machine under -race, not a figure
			t.Fatalf("the upstream did not see client %s cancel its stream within 20s", c.name)
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.calls) != 10 {
		t.Fatalf("upstream saw %d calls, want 10: %+v", len(g.calls), g.calls)
	}
	ids := map[string]map[string]bool{}
	for _, c := range g.calls {
		if ids[c.conn] == nil {
			ids[c.conn] = map[string]bool{}
		}
		ids[c.conn][c.id] = true
	}
	for conn, set := range ids {
		if len(set) != 1 {
			t.Errorf("upstream connection %s carried %v", conn, set)
		}
	}
	if len(ids) != 2 {
		t.Errorf("upstream saw %d connections, want one multiplexed HTTP/2 connection per identity", len(ids))
	}
	// A stream's audit line is written when its handler returns, which
	// may be just after the client has read the end of the stream.
	auditLines := func() int { return len(e.audit.Lines(`"event":"request"`, `"route":"grpc"`)) }
	if !eventually(5*time.Second, func() bool { return auditLines() >= 10 }) || auditLines() != 10 {
		t.Errorf("want 10 audit lines for the gRPC route, got %d", auditLines())
	}
}
