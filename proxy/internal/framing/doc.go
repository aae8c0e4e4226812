// Package framing judges how a client frames its requests, one step ahead
// of Go's HTTP server: Scanner follows HTTP/1.1 heads and bodies and
// replaces a head net/http would accept but that could be smuggled, or
// that is over the limits, by a stand-in request the proxy answers with
// the reason (THREATS P1, P8); after an HTTP/2 preface its checker reads
// the frames and makes Go's server meet the MUSTs of RFC 9113 it misses
// (§3.4, §4.2, §6.5.3, §8.2.2). Both are pure bytes-in, bytes-out state
// machines.
//
// It leaves out reading sockets, identities and answering requests:
// package proxy does.
package framing
