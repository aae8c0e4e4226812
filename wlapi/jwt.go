package wlapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/procmesh/procmesh/workload"
)

// jwtSource returns the JWT issuer, or Unavailable when the Source has
// none.
func (s *Server) jwtSource() error {
	if s.jwt == nil {
		return status.Error(codes.Unavailable, "wlapi: this procmesh's identity source issues no JWT-SVIDs")
	}
	return nil
}

// FetchJWTSVID returns a JWT-SVID of the caller's own SPIFFE ID for the
// audience. spiffe_id, when set, must be that ID: a process cannot have
// another's token by naming it.
func (s *Server) FetchJWTSVID(ctx context.Context, req *workloadpb.JWTSVIDRequest) (*workloadpb.JWTSVIDResponse, error) {
	_, id, err := s.caller(ctx, false)
	if err != nil {
		return nil, err
	}
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.SpiffeId != "" {
		want, err := spiffeid.FromString(req.SpiffeId)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "spiffe_id %q is not a SPIFFE ID: %v", req.SpiffeId, err)
		}
		if want != id.ID() {
			return nil, status.Errorf(codes.PermissionDenied, "process %d is %s; it may fetch JWT-SVIDs of its own SPIFFE ID only, not of %s",
				id.Process.PID, id.ID(), want)
		}
	}
	if err := s.jwtSource(); err != nil {
		return nil, err
	}
	tok, err := s.jwt.JWTSVID(ctx, workloadOf(id), req.Audience)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "wlapi: no JWT-SVID for %s: %v", id.ID(), err)
	}
	if tok.ID != id.ID() {
		return nil, status.Errorf(codes.Internal, "wlapi: the issuer returned a JWT-SVID for %s, not %s", tok.ID, id.ID())
	}
	if _, _, err := s.caller(ctx, true); err != nil {
		return nil, err
	}
	if rec, ok := ctx.Value(rpcRecordKey{}).(*rpcRecord); ok {
		rec.jti = jtiHash(tok)
	}
	return &workloadpb.JWTSVIDResponse{Svids: []*workloadpb.JWTSVID{{SpiffeId: id.ID().String(), Svid: tok.Marshal(), Hint: tok.Hint}}}, nil
}

// FetchJWTBundles streams the JWT bundle (JWKS) of the caller's trust
// domain, again whenever it changes.
func (s *Server) FetchJWTBundles(_ *workloadpb.JWTBundlesRequest, stream grpc.ServerStreamingServer[workloadpb.JWTBundlesResponse]) error {
	ctx := stream.Context()
	rec, _ := ctx.Value(rpcRecordKey{}).(*rpcRecord)
	cs, _, err := s.caller(ctx, false)
	if err != nil {
		return err
	}
	if err := s.jwtSource(); err != nil {
		return err
	}
	// Compared as bundles: their JWKS encoding orders keys at random.
	var last *jwtbundle.Bundle
	return s.follow(ctx, cs, func() error {
		_, id, err := s.caller(ctx, false)
		if err != nil {
			return err
		}
		cur, err := s.jwtBundle(id)
		if err != nil {
			if last == nil {
				return err
			}
			return nil
		}
		if last != nil && cur.Equal(last) {
			return nil
		}
		jwks, err := cur.Marshal()
		if err != nil {
			return status.Errorf(codes.Internal, "wlapi: encode the JWT bundle of %s: %v", cur.TrustDomain(), err)
		}
		if _, _, err := s.caller(ctx, true); err != nil {
			return err
		}
		if err := stream.Send(&workloadpb.JWTBundlesResponse{Bundles: map[string][]byte{cur.TrustDomain().IDString(): jwks}}); err != nil {
			return err
		}
		last = cur.Clone()
		rec.sent.Add(1)
		return nil
	})
}

// jwtBundle is the JWT bundle of id's trust domain.
func (s *Server) jwtBundle(id *workload.Identity) (*jwtbundle.Bundle, error) {
	td := id.ID().TrustDomain()
	b, ok := s.jwt.JWTBundles().Get(td)
	if !ok {
		return nil, status.Errorf(codes.Unavailable, "wlapi: no JWT bundle for trust domain %s yet", td)
	}
	return b, nil
}

// ValidateJWTSVID validates a JWT-SVID for the audience against the JWT
// bundles procmesh holds (go-spiffe's jwtsvid.ParseAndValidate) and
// returns its SPIFFE ID and claims. An invalid token is InvalidArgument.
func (s *Server) ValidateJWTSVID(ctx context.Context, req *workloadpb.ValidateJWTSVIDRequest) (*workloadpb.ValidateJWTSVIDResponse, error) {
	if _, _, err := s.caller(ctx, true); err != nil {
		return nil, err
	}
	switch {
	case req.Audience == "":
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	case req.Svid == "":
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	if err := s.jwtSource(); err != nil {
		return nil, err
	}
	var bundles jwtbundle.Source = s.jwt.JWTBundles()
	tok, err := jwtsvid.ParseAndValidate(req.Svid, bundles, []string{req.Audience})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	claims, err := claimsStruct(tok.Claims)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "wlapi: encode the claims: %v", err)
	}
	return &workloadpb.ValidateJWTSVIDResponse{SpiffeId: tok.ID.String(), Claims: claims}, nil
}

// claimsStruct converts JWT claims to a protobuf Struct through JSON, so
// that typed values (a []string audience) become what Struct holds.
func claimsStruct(claims map[string]any) (*structpb.Struct, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, err
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, err
	}
	return structpb.NewStruct(generic)
}

// jtiHash names a token in audit lines without being it, as the proxy's
// audit lines do (field jwt_jti_sha256): the first 6 bytes of the sha256
// of its jti claim (of the whole token when it has no jti), in hex.
func jtiHash(tok *jwtsvid.SVID) string {
	src := tok.Marshal()
	if jti, ok := tok.Claims["jti"].(string); ok && jti != "" {
		src = jti
	}
	sum := sha256.Sum256([]byte(src))
	return hex.EncodeToString(sum[:6])
}
