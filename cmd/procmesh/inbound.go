package main

import (
	"github.com/rs/zerolog"

	"github.com/procmesh/procmesh/config"
	"github.com/procmesh/procmesh/inbound"
)

// inboundListeners builds the inbound listeners of cfg, each with its
// policy. config.Load has already built the same policies, so this fails
// only for a Config built in code.
func inboundListeners(cfg *config.Config) ([]inbound.Listener, error) {
	out := make([]inbound.Listener, len(cfg.Inbound))
	for i, in := range cfg.Inbound {
		pol, err := cfg.InboundPolicy(i)
		if err != nil {
			return nil, err
		}
		out[i] = inbound.Listener{Name: in.Name, Listen: in.Listen, Service: in.Service, Protocol: in.Protocol,
			Identity: in.Identity, Policy: pol, PassIdentity: in.PassIdentity}
	}
	return out, nil
}

// inboundOptions are the inbound server's settings: the egress limits and
// upstream tuning apply to it too (THREATS N4).
func inboundOptions(cfg *config.Config, n *node, log zerolog.Logger) inbound.Options {
	po := proxyOptions(cfg, log)
	u := cfg.Upstream
	return inbound.Options{
		Source:                 n.src,
		Resolver:               n.resolver,
		Limits:                 po.Limits,
		DialTimeout:            u.ConnectTimeout,
		MaxIdlePerService:      u.MaxIdlePerPool,
		ServiceIdleTimeout:     u.IdleTimeout,
		ResponseHeaderTimeout:  u.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: int(cfg.Limits.MaxResponseHeaderBytes),
		RequestHeadersToRemove: u.RequestHeadersToRemove,
		CopyBufferSize:         int(u.CopyBufferSize),
		Logger:                 log,
		Audit:                  po.Audit,
	}
}
