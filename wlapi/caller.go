package wlapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/procmesh/procmesh/tlsconf"
	"github.com/procmesh/procmesh/workload"
)

// headerKey is the metadata every Workload API request must carry with the
// value "true" (SPIFFE Workload Endpoint §3): a browser or an SSRF'd HTTP
// client cannot set it.
const headerKey = "workload.spiffe.io"

// rpcRecord is what one RPC's audit line says.
type rpcRecord struct {
	rpc   string
	start time.Time
	conn  *connState
	id    *workload.Identity
	sent  atomic.Int64 // stream messages sent
	jti   string       // FetchJWTSVID: the token's jti hash, never the token
	// refusal is why the caller got no identity, for Options.Observe.
	refusal error
}

type rpcRecordKey struct{}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	rec := s.newRecord(ctx, info.FullMethod)
	resp, err := s.checkHeader(ctx)
	if err == nil {
		resp, err = h(context.WithValue(ctx, rpcRecordKey{}, rec), req)
	}
	s.audit(rec, err)
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	rec := s.newRecord(ss.Context(), info.FullMethod)
	_, err := s.checkHeader(ss.Context())
	if err == nil {
		err = h(srv, recordStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), rpcRecordKey{}, rec)})
	}
	s.audit(rec, err)
	return err
}

// recordStream gives the handler a context that carries the RPC's record.
type recordStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s recordStream) Context() context.Context { return s.ctx }

func (s *Server) newRecord(ctx context.Context, method string) *rpcRecord {
	rec := &rpcRecord{rpc: strings.TrimPrefix(method, "/SpiffeWorkloadAPI/"), start: time.Now()}
	if p, ok := peer.FromContext(ctx); ok {
		rec.conn, _ = p.AuthInfo.(*connState)
	}
	return rec
}

func (s *Server) checkHeader(ctx context.Context) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(headerKey); len(v) != 1 || v[0] != "true" {
		return nil, status.Error(codes.InvalidArgument, "security header missing from request: every Workload API request must carry the gRPC metadata "+
			headerKey+": true (SPIFFE Workload Endpoint §3; go-spiffe's client sends it)")
	}
	return nil, nil
}

// caller returns the identity of the process that made the RPC in ctx, or
// the status that refuses it. alive checks, too, that the process is
// still the one attested (not exited, not exec'd, its PID not reused): do
// it before sending anything.
func (s *Server) caller(ctx context.Context, alive bool) (*connState, *workload.Identity, error) {
	rec, _ := ctx.Value(rpcRecordKey{}).(*rpcRecord)
	if rec == nil || rec.conn == nil {
		return nil, nil, status.Error(codes.Internal, "wlapi: the connection was not attested")
	}
	cs := rec.conn
	if fw := cs.conn.ForeignWriter(); fw != nil {
		rec.refusal = fw
		return nil, nil, status.Error(codes.PermissionDenied, fw.Error())
	}
	id, err := cs.identity(ctx)
	if err != nil {
		rec.refusal = err
		return nil, nil, refusal(err)
	}
	rec.id = id
	if !s.mayUse(id.ID()) {
		return nil, nil, status.Error(codes.PermissionDenied, fmt.Sprintf(
			"wlapi: %s may not use the Workload API on this node: it is not in listen.workload_api_ids (the Workload API hands a process its private key; the egress socket needs no such grant)", id.ID()))
	}
	if alive && (cs.pin.Exited() || !s.opts.Alive(id.Process.Fingerprint)) {
		return nil, nil, status.Error(codes.PermissionDenied, fmt.Sprintf(
			"wlapi: process %d is no longer the process attested when it connected (it exited, or exec'd another program); connect again", cs.pid()))
	}
	return cs, id, nil
}

// workloadOf is what the Source issues for id.
func workloadOf(id *workload.Identity) tlsconf.Workload {
	return tlsconf.Workload{ID: id.ID(), PID: id.Process.PID, Selectors: id.Process.Selectors}
}

// audit writes the line of one RPC (rpc "connection": of a connection
// closed at the handshake). The reason an RPC failed is "refused" when it
// sent nothing, and "ended" when it was a stream that had sent its caller
// messages (the process exited, hung up, lost its entry).
func (s *Server) audit(rec *rpcRecord, err error) {
	ev := s.opts.Audit.Log().Str("event", "workload_api").Str("rpc", rec.rpc)
	ev = auditWho(ev, rec)
	st, _ := status.FromError(err)
	outcome := codes.OK.String()
	if err != nil {
		outcome = st.Code().String()
		key := "refused"
		if rec.sent.Load() > 0 {
			key = "ended"
		}
		ev = ev.Str(key, st.Message())
	}
	if rec.jti != "" {
		ev = ev.Str("jwt_jti_sha256", rec.jti)
	}
	if n := rec.sent.Load(); n > 0 {
		ev = ev.Int64("messages", n)
	}
	if !rec.start.IsZero() {
		ev = ev.Float64("duration_ms", float64(time.Since(rec.start).Microseconds())/1000)
	}
	ev.Str("outcome", outcome).Send()
	if s.opts.Observe != nil {
		s.opts.Observe(rec.rpc, outcome, rec.refusal)
	}
}

// auditWho adds who made the RPC: the identity, or what is known of a
// refused process.
func auditWho(ev *zerolog.Event, rec *rpcRecord) *zerolog.Event {
	if rec.id != nil {
		p := rec.id.Process
		return ev.Int32("pid", p.PID).Uint32("uid", p.UID).Str("exe", p.ExePath).Str("spiffe_id", rec.id.ID().String())
	}
	if rec.conn == nil {
		return ev
	}
	ev = ev.Int32("pid", rec.conn.pid()).Uint32("uid", rec.conn.conn.uid)
	var nm *workload.NoMatchError
	if errors.As(rec.conn.err, &nm) {
		ev = ev.Str("exe", nm.Process.ExePath).Strs("selectors", nm.Process.Selectors)
	}
	return ev
}

// auditSent writes the line of an X509-SVID (and its key) sent to a
// process: the key left procmesh.
func (s *Server) auditSent(rec *rpcRecord, id *workload.Identity, serial string, notAfter time.Time) {
	s.opts.Audit.Log().Str("event", "workload_api").Str("rpc", rec.rpc).Int32("pid", id.Process.PID).
		Uint32("uid", id.Process.UID).Str("exe", id.Process.ExePath).Str("spiffe_id", id.ID().String()).
		Str("sent", "x509_svid").Str("serial", serial).Time("expires", notAfter).Str("outcome", "sent").Send()
}
