package spire

import "github.com/procmesh/procmesh/attest"

// SetBeforeSubscribe makes s run f before each SVID subscription: tests
// act between procmesh's attestation and SPIRE's with it.
func SetBeforeSubscribe(s *Source, f func(attest.Fingerprint)) { s.beforeSubscribe = f }

// SetBeforeFetchJWT makes s run f before each FetchJWTSVIDs call, after
// its own checks of the process.
func SetBeforeFetchJWT(s *Source, f func(attest.Fingerprint)) { s.beforeFetchJWT = f }
