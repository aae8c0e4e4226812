package config

import (
	"github.com/procmesh/procmesh/policy"
)

// PolicyRules returns the rules as policy rules, in order, so that index N
// is policy.rules[N]. Modes other than "audit" are enforce.
func (c *Config) PolicyRules() []policy.Rule {
	out := make([]policy.Rule, len(c.Policy.Rules))
	for i, r := range c.Policy.Rules {
		pr := policy.Rule{
			Name:      r.Name,
			Selectors: r.Selectors,
			To:        r.To,
			Methods:   r.Methods,
			Paths:     r.Paths,
			Headers:   r.Headers,
		}
		for _, from := range r.From {
			if from.Prefix {
				pr.FromPrefix = append(pr.FromPrefix, from.ID)
			} else {
				pr.From = append(pr.From, from.ID)
			}
		}
		if r.Mode == "audit" {
			pr.Mode = policy.Audit
		}
		out[i] = pr
	}
	return out
}

// RouteProtocols maps each route's name to its protocol, for
// policy.WithRouteProtocols.
func (c *Config) RouteProtocols() map[string]string {
	out := make(map[string]string, len(c.Routes))
	for _, r := range c.Routes {
		out[r.Name] = r.Protocol
	}
	return out
}
