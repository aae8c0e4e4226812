package spire

import "github.com/procmesh/procmesh/attest"

// SetBeforeSubscribe makes s run f before each SVID subscription: tests
// act between procmesh's attestation and SPIRE's with it.
func SetBeforeSubscribe(s *Source, f func(attest.Fingerprint)) { s.beforeSubscribe = f }
