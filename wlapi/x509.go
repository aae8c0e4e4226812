package wlapi

import (
	"bytes"
	"context"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/procmesh/procmesh/workload"
)

// FetchX509SVID streams the caller's own X509-SVID, its private key and
// the bundle of its trust domain: the full state in every message, a new
// message when the SVID rotates, the bundle changes or a reload gives the
// process another SPIFFE ID. A process whose identity is withdrawn gets
// PermissionDenied and the stream ends.
func (s *Server) FetchX509SVID(_ *workloadpb.X509SVIDRequest, stream grpc.ServerStreamingServer[workloadpb.X509SVIDResponse]) error {
	ctx := stream.Context()
	rec, _ := ctx.Value(rpcRecordKey{}).(*rpcRecord)
	cs, _, err := s.caller(ctx, false)
	if err != nil {
		return err
	}
	var (
		lastSVID   *x509svid.SVID
		lastBundle []byte
		failing    bool // warned about a failure not yet over
	)
	return s.follow(ctx, cs, func() error {
		_, id, err := s.caller(ctx, false)
		if err != nil {
			return err
		}
		svid, bundle, err := s.x509State(ctx, id)
		if err != nil {
			if lastSVID == nil {
				return err
			}
			if !failing {
				s.opts.Logger.Warn().Err(err).Int32("pid", id.Process.PID).Str("spiffe_id", id.ID().String()).
					Msg("Workload API: no new SVID for a stream; its last one stays in use")
			}
			failing = true
			return nil
		}
		failing = false
		if svid == lastSVID && bytes.Equal(bundle, lastBundle) {
			return nil
		}
		certs, key, err := svid.MarshalRaw()
		if err != nil {
			return status.Errorf(codes.Internal, "wlapi: encode the SVID of %s: %v", id.ID(), err)
		}
		// The key leaves procmesh: only to the process attested, checked
		// just before.
		if _, id, err = s.caller(ctx, true); err != nil {
			return err
		}
		if svid.ID != id.ID() {
			return nil // a reload changed the ID meanwhile: next round
		}
		err = stream.Send(&workloadpb.X509SVIDResponse{Svids: []*workloadpb.X509SVID{{
			SpiffeId:    id.ID().String(),
			X509Svid:    certs,
			X509SvidKey: key,
			Bundle:      bundle,
		}}})
		if err != nil {
			return err
		}
		lastSVID, lastBundle = svid, bundle
		rec.sent.Add(1)
		leaf := svid.Certificates[0]
		s.auditSent(rec, id, leaf.SerialNumber.Text(16), leaf.NotAfter)
		return nil
	})
}

// x509State is id's current SVID and the DER of its trust domain's bundle.
// It waits for a new identity's first SVID.
func (s *Server) x509State(ctx context.Context, id *workload.Identity) (*x509svid.SVID, []byte, error) {
	svid, err := s.opts.Source.SVID(ctx, workloadOf(id))
	if err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "wlapi: no X509-SVID for %s yet: %v", id.ID(), err)
	}
	bundle, err := s.bundleDER(id)
	if err != nil {
		return nil, nil, err
	}
	return svid, bundle, nil
}

// bundleDER is the X.509 bundle of id's trust domain, DER concatenated.
func (s *Server) bundleDER(id *workload.Identity) ([]byte, error) {
	td := id.ID().TrustDomain()
	b, err := s.opts.Source.Bundles().GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "wlapi: no X.509 bundle for trust domain %s yet: %v", td, err)
	}
	return concatDER(b), nil
}

func concatDER(b *x509bundle.Bundle) []byte {
	var out []byte
	for _, c := range b.X509Authorities() {
		out = append(out, c.Raw...)
	}
	return out
}

// FetchX509Bundles streams the X.509 bundle of the caller's trust domain
// (the only one it may see), again whenever it changes.
func (s *Server) FetchX509Bundles(_ *workloadpb.X509BundlesRequest, stream grpc.ServerStreamingServer[workloadpb.X509BundlesResponse]) error {
	ctx := stream.Context()
	rec, _ := ctx.Value(rpcRecordKey{}).(*rpcRecord)
	cs, _, err := s.caller(ctx, false)
	if err != nil {
		return err
	}
	var last map[string][]byte
	return s.follow(ctx, cs, func() error {
		_, id, err := s.caller(ctx, false)
		if err != nil {
			return err
		}
		der, err := s.bundleDER(id)
		if err != nil {
			if last == nil {
				return err
			}
			return nil
		}
		cur := map[string][]byte{id.ID().TrustDomain().IDString(): der}
		if sameBundles(cur, last) {
			return nil
		}
		if _, _, err := s.caller(ctx, true); err != nil {
			return err
		}
		if err := stream.Send(&workloadpb.X509BundlesResponse{Bundles: cur}); err != nil {
			return err
		}
		last = cur
		rec.sent.Add(1)
		return nil
	})
}

func sameBundles(a, b map[string][]byte) bool {
	if len(a) != len(b) || a == nil != (b == nil) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
