package tlsconf

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Workload names what to issue for. The builtin CA and SPIRE's Delegated
// Identity source (package spire, which subscribes by PID when attesting)
// both key SVIDs by ID.
type Workload struct {
	ID        spiffeid.ID
	PID       int32
	Selectors []string
}

// Source hands out SVIDs for workloads and the bundles to verify peers.
//
// The *x509svid.SVID returned by SVID is shared between callers and must not
// be modified.
type Source interface {
	SVID(ctx context.Context, w Workload) (*x509svid.SVID, error)
	Bundles() x509bundle.Source
	Close() error
}

// Issuer mints a fresh X509-SVID for an identity. CA implements it.
type Issuer interface {
	Mint(id spiffeid.ID) (*x509svid.SVID, error)
}

var (
	_ Source = (*Store)(nil)
	_ Issuer = (*CA)(nil)

	_ localIssuer = (*CA)(nil)
)

// SVIDSourceFor adapts src to an x509svid.Source for one workload. Every
// GetX509SVID call asks src again, so each TLS handshake presents the current
// SVID and a rotation is picked up without rebuilding the tls.Config.
func SVIDSourceFor(src Source, w Workload) x509svid.Source {
	return workloadSource{src: src, w: w}
}

type workloadSource struct {
	src Source
	w   Workload
}

func (s workloadSource) GetX509SVID() (*x509svid.SVID, error) {
	// A TLS handshake offers no context; the Source's own Close unblocks
	// a wait for issuance.
	return s.src.SVID(context.Background(), s.w)
}

func checkWorkload(w Workload) error {
	if w.ID.IsZero() {
		return errors.New("tlsconf: workload has no SPIFFE ID")
	}
	if w.ID.Path() == "" {
		return fmt.Errorf("tlsconf: workload ID %s has no path; an X509-SVID needs one", w.ID)
	}
	return nil
}
