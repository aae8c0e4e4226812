package spire

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	delegatedidentityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"
)

// errProcessGone ends a stream whose process exited or changed.
var errProcessGone = errors.New("process exited or changed")

// run keeps p's stream subscribed until the process exits or changes, or
// the Source closes; then it forgets p.
func (s *Source) run(ctx context.Context, key procKey, p *proc) {
	defer s.wg.Done()
	defer func() {
		p.cancel()
		p.pin.Close()
		s.mu.Lock()
		p.gone = true
		if s.procs[key] == p {
			delete(s.procs, key)
		}
		s.forgetUnused(p.answer)
		s.mu.Unlock()
		closeOnce(p)
	}()
	for attempt := 0; ; attempt++ {
		answered, err := s.subscribe(ctx, p)
		if ctx.Err() != nil || errors.Is(err, errProcessGone) {
			return
		}
		if answered {
			attempt = 0
		}
		s.mu.Lock()
		p.err = err
		s.mu.Unlock()
		s.agentDown(err)
		s.opts.Logger.Debug().Err(err).Int32("pid", p.fp.PID).Msg("SPIRE SVID stream ended; re-subscribing")
		if !sleep(ctx, s.backoff(attempt)) {
			return
		}
	}
}

// closeOnce closes p.first unless it is closed.
func closeOnce(p *proc) {
	select {
	case <-p.first:
	default:
		close(p.first)
	}
}

// subscribe runs one SubscribeToX509SVIDs stream for p by PID. It reports
// whether any answer came.
func (s *Source) subscribe(ctx context.Context, p *proc) (bool, error) {
	if p.pin.Exited() {
		return false, errProcessGone
	}
	if s.beforeSubscribe != nil {
		s.beforeSubscribe(p.fp)
	}
	stream, err := s.client.SubscribeToX509SVIDs(ctx, &delegatedidentityv1.SubscribeToX509SVIDsRequest{Pid: p.fp.PID})
	if err != nil {
		return false, describe(err)
	}
	answered := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return answered, ctx.Err()
			}
			return answered, describe(err)
		}
		// SPIRE attested the PID when the stream started: the answer is
		// the process's only if the process is still the one procmesh
		// attested (no exit and PID reuse, no exec) now that it came.
		if p.pin.Exited() || !s.opts.Alive(p.fp) {
			s.opts.Logger.Debug().Int32("pid", p.fp.PID).Msg("discarded a SPIRE answer: the process exited or changed")
			return answered, errProcessGone
		}
		ans, svids, err := parseAnswer(resp, s.opts.Now())
		if err != nil {
			return answered, err
		}
		answered = true
		s.agentUp()
		s.mu.Lock()
		s.pruneExpired()
		for _, sv := range svids {
			if cur := s.svids[sv.ID]; cur == nil || !sv.Certificates[0].NotBefore.Before(cur.Certificates[0].NotBefore) {
				s.svids[sv.ID] = sv
			}
		}
		p.answer, p.answered, p.err = ans, true, nil
		s.mu.Unlock()
		closeOnce(p)
		ids := make([]string, len(ans.SVIDs))
		for i, sv := range ans.SVIDs {
			ids[i] = sv.ID.String()
		}
		s.opts.Logger.Debug().Int32("pid", p.fp.PID).Strs("spiffe_ids", ids).Msg("SPIRE answered for a process")
	}
}

// parseAnswer checks and parses one SVID message: every SVID's chain and
// PKCS#8 key, and that the leaf's URI SAN is the ID the message names.
func parseAnswer(resp *delegatedidentityv1.SubscribeToX509SVIDsResponse, now time.Time) (Answer, []*x509svid.SVID, error) {
	ans := Answer{At: now, FederatesWith: resp.FederatesWith}
	svids := make([]*x509svid.SVID, 0, len(resp.X509Svids))
	for i, w := range resp.X509Svids {
		if w.GetX509Svid() == nil || len(w.X509Svid.CertChain) == 0 {
			return Answer{}, nil, fmt.Errorf("spire: the agent sent SVID %d without a certificate", i)
		}
		sv, err := x509svid.ParseRaw(bytes.Join(w.X509Svid.CertChain, nil), w.X509SvidKey)
		if err != nil {
			return Answer{}, nil, fmt.Errorf("spire: the agent sent an SVID procmesh cannot use: %w", err)
		}
		if pid := w.X509Svid.GetId(); pid != nil {
			td, err := spiffeid.TrustDomainFromString(pid.TrustDomain)
			if err != nil {
				return Answer{}, nil, fmt.Errorf("spire: the agent sent an SVID with trust domain %q: %w", pid.TrustDomain, err)
			}
			if named, err := spiffeid.FromPath(td, pid.Path); err != nil || named != sv.ID {
				return Answer{}, nil, fmt.Errorf("spire: the agent sent an SVID for %s whose certificate is for %s", named, sv.ID)
			}
		}
		svids = append(svids, sv)
		ans.SVIDs = append(ans.SVIDs, SVIDInfo{ID: sv.ID, Hint: w.X509Svid.Hint,
			NotBefore: sv.Certificates[0].NotBefore, ExpiresAt: sv.Certificates[0].NotAfter})
	}
	return ans, svids, nil
}

// bundleLoop keeps the bundle subscription up until the Source closes.
func (s *Source) bundleLoop() {
	defer s.wg.Done()
	s.keepSubscribed(s.subscribeBundles, s.agentDown)
}

func (s *Source) subscribeBundles() (bool, error) {
	stream, err := s.client.SubscribeToX509Bundles(s.ctx, &delegatedidentityv1.SubscribeToX509BundlesRequest{})
	if err != nil {
		return false, describe(err)
	}
	return receive(stream, func(resp *delegatedidentityv1.SubscribeToX509BundlesResponse) bool {
		set, err := bundleSet(resp.CaCertificates)
		if err != nil {
			s.opts.Logger.Error().Err(err).Msg("ignored a trust bundle update from the SPIRE agent")
			return false
		}
		s.agentUp()
		s.bundles.set(set)
		s.bundleOnce.Do(func() { close(s.bundleReady) })
		s.opts.Logger.Debug().Int("trust_domains", set.Len()).Msg("trust bundles from the SPIRE agent")
		return true
	})
}

// keepSubscribed runs subscribe until the Source closes, again after each
// end, with backoff that starts over once a stream has answered; ended
// hears why each stream ended.
func (s *Source) keepSubscribed(subscribe func() (answered bool, err error), ended func(error)) {
	for attempt := 0; ; attempt++ {
		answered, err := subscribe()
		if s.ctx.Err() != nil {
			return
		}
		if answered {
			attempt = 0
		}
		ended(err)
		if !sleep(s.ctx, s.backoff(attempt)) {
			return
		}
	}
}

// receive passes every message of stream to apply until the stream fails,
// and reports whether apply took one (returned true).
func receive[T any](stream interface{ Recv() (T, error) }, apply func(T) bool) (bool, error) {
	answered := false
	for {
		msg, err := stream.Recv()
		if err != nil {
			return answered, describe(err)
		}
		if apply(msg) {
			answered = true
		}
	}
}

// bundleSet builds the bundle set of one update.
func bundleSet(cas map[string][]byte) (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	for name, der := range cas {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, fmt.Errorf("spire: bundle for %q: %w", name, err)
		}
		certs, err := parseCerts(der)
		if err != nil {
			return nil, fmt.Errorf("spire: bundle for %s: %w", td, err)
		}
		set.Add(x509bundle.FromX509Authorities(td, certs))
	}
	return set, nil
}

// bundleView is an x509bundle.Source over SPIRE's bundles, swapped
// atomically at each update, plus the static ones (whose set a reload
// updates in place): a trust domain in both gets the roots of both.
type bundleView struct {
	spire  atomic.Pointer[x509bundle.Set]
	static *x509bundle.Set
}

func (v *bundleView) set(s *x509bundle.Set) { v.spire.Store(s) }

func (v *bundleView) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	sp, inSPIRE := v.spire.Load().Get(td)
	st, inStatic := v.static.Get(td)
	switch {
	case inSPIRE && inStatic:
		merged := sp.Clone()
		for _, c := range st.X509Authorities() {
			if !merged.HasX509Authority(c) {
				merged.AddX509Authority(c)
			}
		}
		return merged, nil
	case inSPIRE:
		return sp, nil
	case inStatic:
		return st, nil
	}
	return nil, fmt.Errorf("spire: no trust bundle for trust domain %q from the SPIRE agent or trust_bundles", td)
}

// parseCerts parses concatenated DER certificates.
func parseCerts(der []byte) ([]*x509.Certificate, error) {
	return x509.ParseCertificates(der)
}
