package explain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/procmesh/procmesh/attest"
	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/spire"
	"github.com/procmesh/procmesh/workload"
)

// identifySPIRE asks the SPIRE agent about the process fp as the proxy
// would (a stream by PID, through the admin socket: explain must run as
// the same binary, with the same entry, as procmesh) and prints what it
// answered. It returns the process's SPIFFE ID, or false when there is
// none.
func identifySPIRE(w io.Writer, cfg *config.Config, att *attest.Attestor, fp attest.Fingerprint) (spiffeid.ID, bool) {
	sock := cfg.Identity.SPIRE.AdminSocket
	fmt.Fprintf(w, "identity\tSPIRE agent at %s (Delegated Identity API, by PID)\n", sock)
	src, err := spire.New(spire.Options{AdminSocket: sock, FirstMessageTimeout: cfg.Identity.SPIRE.FirstAnswerTimeout, Alive: att.Alive, MaxStreams: 1})
	if err != nil {
		fmt.Fprintf(w, "spire\t%v\n", err)
		return spiffeid.ID{}, false
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Identity.SPIRE.FirstAnswerTimeout+time.Second)
	defer cancel()
	id, err := src.Identify(ctx, fp)
	if ans, ok := src.Lookup(fp); ok {
		if len(ans.SVIDs) == 0 {
			fmt.Fprintln(w, "spire answer\tno SVID")
		}
		for i, sv := range ans.SVIDs {
			label := "spire answer"
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(w, "%s\t%s (valid %s to %s", label, sv.ID, sv.NotBefore.UTC().Format(time.RFC3339), sv.ExpiresAt.UTC().Format(time.RFC3339))
			if sv.Hint != "" {
				fmt.Fprintf(w, ", hint %q", sv.Hint)
			}
			if i == 0 {
				fmt.Fprint(w, "; the one procmesh uses")
			}
			fmt.Fprintln(w, ")")
		}
		if len(ans.FederatesWith) > 0 {
			fmt.Fprintf(w, "federates with\t%s\n", strings.Join(ans.FederatesWith, " "))
		}
	}
	switch {
	case errors.Is(err, workload.ErrNoIdentity):
		fmt.Fprintln(w, "entry\tnone in SPIRE: procmesh refuses this process (403 listing the selectors above)")
		return spiffeid.ID{}, false
	case err != nil:
		fmt.Fprintf(w, "spire\t%v\n", err)
		return spiffeid.ID{}, false
	}
	fmt.Fprintln(w, "entry\tin SPIRE (spire-server entry show -spiffeID ...)")
	return id, true
}
