// Package upstream is procmesh's client side toward upstreams: one Pool
// per (identity, route), holding that identity's TLS configs (its SVID and
// its own session cache) and its own connections, for every protocol a
// route speaks: HTTP/1.1 (H1Pool, the fast path's keep-alive connections,
// and net/http's transport), HTTP/2 (x/net through net/http), HTTP/3
// (quic-go, the only importer of it in procmesh), auto (Alt-Svc driven
// moves between them) and TCP with TLS for tunnels and raw sockets
// (TunnelConn).
//
// Its contract is THREATS I5 and I6: a pool's connections and TLS sessions
// are never offered to another identity, and a connection only ever goes
// to its route's Upstream address. Pools.Get is the only way to a
// connection, and it is keyed by (identity, route).
//
// It leaves out who the caller is, policy and the client's side of the
// proxy: package proxy does them and hands this package the workload.
package upstream
