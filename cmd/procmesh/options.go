package main

import (
	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/proxy"
)

// proxyOptions turns the limits and upstream sections of cfg into the
// proxy's options. Every key is documented, with its default, in
// configs/example.yaml.
func proxyOptions(cfg *config.Config, n *node, log zerolog.Logger) proxy.Options {
	l, u := cfg.Limits, cfg.Upstream
	return proxy.Options{
		Resolver:       n.resolver,
		Identities:     n.src,
		Logger:         log,
		CopyBufferSize: int(u.CopyBufferSize),
		Audit:          log.Level(zerolog.InfoLevel).With().Str("log", "audit").Logger(),
		Limits: proxy.Limits{
			MaxRequestHeaderBytes:     int(l.MaxRequestHeaderBytes),
			MaxRequestHeaders:         l.MaxRequestHeaders,
			MaxResponseHeaders:        l.MaxResponseHeaders,
			ReadHeaderTimeout:         l.HeaderReadTimeout,
			IdleTimeout:               l.IdleTimeout,
			RequestTimeout:            l.RequestTimeout,
			StreamIdleTimeout:         l.StreamIdleTimeout,
			MaxConcurrentStreams:      l.MaxConcurrentStreams,
			MaxConnections:            l.MaxConnections,
			MaxConnectionsPerIdentity: l.MaxConnectionsPerIdentity,
			MaxRequestBodyBytes:       l.MaxRequestBodyBytes,
		},
		Upstream: proxy.UpstreamOptions{
			DialTimeout:                    u.ConnectTimeout,
			IdleConnTimeout:                u.IdleTimeout,
			MaxIdlePerPool:                 u.MaxIdlePerPool,
			ResponseHeaderTimeout:          u.ResponseHeaderTimeout,
			MaxResponseHeaderBytes:         int(l.MaxResponseHeaderBytes),
			H2ReadIdleTimeout:              u.HTTP2ReadIdleTimeout,
			QUICMaxIdleTimeout:             u.QUIC.IdleTimeout,
			QUICKeepAlivePeriod:            u.QUIC.KeepAlivePeriod,
			QUICMaxStreamReceiveWindow:     int(u.QUIC.MaxStreamReceiveWindow),
			QUICMaxConnectionReceiveWindow: int(u.QUIC.MaxConnectionReceiveWindow),
			QUICMaxIncomingUniStreams:      int(u.QUIC.MaxIncomingStreams),
			TLSCurves:                      u.TLSCurves,
			TLSMaxRecords:                  u.TLSRecordSizing == "max",
			Logger:                         log,
		},
	}
}
