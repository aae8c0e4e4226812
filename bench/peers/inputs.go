package peers

import (
	"path/filepath"

	"github.com/procmesh/procmesh/bench/pki"
)

// Upstream is where the benchmark's upstream listens.
type Upstream struct {
	H1, H2, H3, L4 string // host:port
	ServerName     string // SNI and verified DNS name
	ServerID       string // SPIFFE ID
}

// Inputs is what every generator needs.
type Inputs struct {
	Dir      string    // run directory: sockets, configs, logs
	Client   pki.Files // the proxy's client certificate toward the upstream
	Upstream Upstream
	// GID owns the proxies' sockets (mode 0660), so the cold-identity
	// processes, which run as other uids in this group, can connect.
	GID int
	// MaxConns is how many client connections a proxy must hold at once
	// (the idle-connection memory scenario), with headroom.
	MaxConns int
	// FDLimit is the descriptor limit the proxies get (RLIMIT_NOFILE's hard
	// limit); nginx is told not to ask for more.
	FDLimit int
}

func (in Inputs) path(name string) string { return filepath.Join(in.Dir, name) }

// Sockets of a proxy: one per kind of traffic. Empty means the proxy cannot
// carry it here.
type Sockets struct {
	HTTP string // HTTP/1.1 from the client, HTTP/1.1 upstream
	H2   string // HTTP/1.1 from the client, HTTP/2 upstream
	H3   string // HTTP/1.1 from the client, HTTP/3 upstream
	L4   string // raw bytes
}
