package spiretest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	delegatedidentityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Server runs a spire-server CLI command against the test server.
func (s *SPIRE) Server(args ...string) (string, error) {
	args = append(args, "-socketPath", s.ServerSocket)
	out, err := exec.Command(filepath.Join(s.Bin, "spire-server"), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("spire-server %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// CreateEntry creates a registration entry under NodeID and returns its
// entry ID. extra are more `entry create` flags (-x509SVIDTTL 20, ...).
func (s *SPIRE) CreateEntry(spiffeID string, selectors ...string) string {
	return s.CreateEntryWith(nil, spiffeID, selectors...)
}

// CreateEntryWith is CreateEntry with more `entry create` flags.
func (s *SPIRE) CreateEntryWith(extra []string, spiffeID string, selectors ...string) string {
	s.t.Helper()
	args := []string{"entry", "create", "-parentID", NodeID, "-spiffeID", spiffeID}
	for _, sel := range selectors {
		args = append(args, "-selector", sel)
	}
	args = append(args, extra...)
	out, err := s.Server(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "Entry ID" {
			return strings.TrimSpace(v)
		}
	}
	s.t.Fatalf("spiretest: no entry ID in: %s", out)
	return ""
}

// DeleteEntry deletes a registration entry.
func (s *SPIRE) DeleteEntry(entryID string) {
	s.t.Helper()
	if _, err := s.Server("entry", "delete", "-entryID", entryID); err != nil {
		s.t.Fatal(err)
	}
}

// Fetch asks the agent, as the delegate, for the SVIDs of a selector set
// (one message) and returns their SPIFFE IDs.
func (s *SPIRE) Fetch(ctx context.Context, selectors ...string) ([]spiffeid.ID, error) {
	conn, err := grpc.NewClient("unix://"+s.AdminSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := &delegatedidentityv1.SubscribeToX509SVIDsRequest{}
	for _, sel := range selectors {
		typ, val, _ := strings.Cut(sel, ":")
		req.Selectors = append(req.Selectors, &types.Selector{Type: typ, Value: val})
	}
	stream, err := delegatedidentityv1.NewDelegatedIdentityClient(conn).SubscribeToX509SVIDs(ctx, req)
	if err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var ids []spiffeid.ID
	for _, sv := range resp.X509Svids {
		td, err := spiffeid.TrustDomainFromString(sv.X509Svid.Id.TrustDomain)
		if err != nil {
			return nil, err
		}
		id, err := spiffeid.FromPath(td, sv.X509Svid.Id.Path)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// WaitEntry waits until the agent issues spiffeID for the selectors (the
// entry has propagated from the server).
func (s *SPIRE) WaitEntry(spiffeID string, selectors ...string) {
	s.t.Helper()
	s.waitFor("entry "+spiffeID+" at the agent", func() error {
		ids, err := s.Fetch(context.Background(), selectors...)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if id.String() == spiffeID {
				return nil
			}
		}
		return fmt.Errorf("the agent issues %v for %v", ids, selectors)
	})
}

// BundlePEM is the server's bundle for TrustDomain, PEM.
func (s *SPIRE) BundlePEM() []byte {
	s.t.Helper()
	out, err := s.Server("bundle", "show", "-format", "pem")
	if err != nil {
		s.t.Fatal(err)
	}
	return []byte(out)
}

// AgentLog returns the agent's log so far.
func (s *SPIRE) AgentLog() []byte {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "agent.log"))
	return bytes.Clone(b)
}
