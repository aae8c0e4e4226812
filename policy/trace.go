package policy

// Step is one rule's part in a decision, for `procmesh explain`.
type Step struct {
	Index int    // the rule's index in New's rules
	Rule  string // its name
	Mode  Mode
	// Failed is the first condition the request does not meet: "from",
	// "selectors", "connection" (the rule sets methods, paths or headers
	// and the request is a connection), "methods", "paths" or "headers";
	// "" when the rule matches.
	Failed string
	// Decides is set on the rule that made the decision.
	Decides bool
}

// Trace returns Decide's decision and, in the order Decide tries them,
// every rule naming req.Route with whether it matched. It is for
// explaining a decision, not for the request path: it allocates.
func (p *Policy) Trace(req Request) (Decision, []Step) {
	d := p.Decide(req)
	var steps []Step
	for _, c := range p.byRoute[req.Route] {
		s := Step{Index: c.index, Rule: c.name, Mode: c.mode, Failed: c.match(&req)}
		s.Decides = d.Rule == c.name && s.Failed == ""
		steps = append(steps, s)
	}
	return d, steps
}
