package wlapi

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/procmesh/procmesh/internal/credread"
	"github.com/procmesh/procmesh/workload"
)

// ForeignWriterError fails the reads of a connection on which another
// process than the connecting one wrote (THREATS I12): the connecting
// process was attested, the writer was not.
type ForeignWriterError struct {
	Writer, Connector int32
	WriterExe         string // best effort, for the message
}

// WrittenBy makes it a credread.WriterError.
func (e *ForeignWriterError) WrittenBy() (writer, connector int32) { return e.Writer, e.Connector }

func (e *ForeignWriterError) Error() string {
	return fmt.Sprintf("wlapi: bytes on this connection were written by %s, not by process %d, which connected and was attested; "+
		"each process must connect to the Workload API itself (THREATS I12)", credread.DescribeWriter(e.Writer, e.WriterExe), e.Connector)
}

// errShutdown ends streams when procmesh stops.
var errShutdown = status.Error(codes.Unavailable, "procmesh is shutting down; connect again once it is back")

// refusal is the status that refuses a caller for err, which says why it
// has no identity: PermissionDenied with the reason, or Unavailable when
// the reason may pass by itself (attestation timed out, rate limited).
func refusal(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if transient(err) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.PermissionDenied, err.Error())
}

// transient reports whether an attestation failed for a reason that
// passes by itself: the uid's attestation budget (THREATS F12), a slow
// identity provider.
func transient(err error) bool {
	var rl *workload.RateLimitError
	return errors.As(err, &rl) || errors.Is(err, errAttestTimeout)
}

var errAttestTimeout = errors.New("wlapi: attesting the process took too long; try again")
