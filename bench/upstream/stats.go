package upstream

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// Handshake is one kind of handshake the upstream saw, and how many.
type Handshake struct {
	Client    string `json:"client"` // SPIFFE ID of the client certificate
	Transport string `json:"transport"`
	Version   string `json:"version"`
	Cipher    string `json:"cipher"`
	Group     string `json:"group"`
	Offered   string `json:"offered_groups"`
	ALPN      string `json:"alpn"`
	Resumed   bool   `json:"resumed"`
	Count     int    `json:"count"`
}

// Stats counts handshakes by kind. It is safe for concurrent use.
type Stats struct {
	mu sync.Mutex
	m  map[Handshake]int
}

// NewStats returns empty counters.
func NewStats() *Stats { return &Stats{m: make(map[Handshake]int)} }

func (s *Stats) record(transport, offered string, cs tls.ConnectionState) {
	k := Handshake{
		Transport: transport,
		Offered:   offered,
		Version:   tls.VersionName(cs.Version),
		Cipher:    tls.CipherSuiteName(cs.CipherSuite),
		Group:     cs.CurveID.String(),
		ALPN:      cs.NegotiatedProtocol,
		Resumed:   cs.DidResume,
	}
	if len(cs.PeerCertificates) > 0 && len(cs.PeerCertificates[0].URIs) > 0 {
		k.Client = cs.PeerCertificates[0].URIs[0].String()
	}
	s.mu.Lock()
	s.m[k]++
	s.mu.Unlock()
}

// Snapshot returns the counters, sorted by client then transport.
func (s *Stats) Snapshot() []Handshake {
	s.mu.Lock()
	out := make([]Handshake, 0, len(s.m))
	for k, n := range s.m {
		k.Count = n
		out = append(out, k)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Handshake) int {
		return cmp.Or(cmp.Compare(a.Client, b.Client), cmp.Compare(a.Transport, b.Transport),
			cmp.Compare(a.ALPN, b.ALPN), cmp.Compare(a.Group, b.Group), cmp.Compare(a.Cipher, b.Cipher))
	})
	return out
}

// FetchStats reads the counters of a running upstream from its stats
// address.
func FetchStats(ctx context.Context, addr string) ([]Handshake, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/stats", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upstream: stats: %w", err)
	}
	defer resp.Body.Close()
	var hs []Handshake
	if err := json.NewDecoder(resp.Body).Decode(&hs); err != nil {
		return nil, fmt.Errorf("upstream: stats: %w", err)
	}
	return hs, nil
}
