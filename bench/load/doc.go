// Package load generates the benchmark suite's traffic: a lean HTTP/1.1
// keep-alive client that runs closed-loop (as fast as C connections allow)
// or open-loop (a fixed schedule, latency measured from each request's
// scheduled time so a stall is not hidden), HTTP/2 and HTTP/3 clients for
// direct TLS, an L4 bulk sender, an h2load runner and parser, and the
// cold-identity client that runs once per process.
//
// The same Go client runs against every contestant, proxies over their Unix
// sockets and the upstream directly over mTLS, so every comparison has one
// common client. It leaves out starting what it talks to (package peers).
package load
