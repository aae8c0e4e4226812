package attest

// AttestOptions says which optional parts of an attestation to make. The
// zero value makes none of them.
type AttestOptions struct {
	// Names looks up the user and group names of the process's uid and
	// gid (os/user: NSS, which may read /etc/passwd and /etc/group or ask
	// sssd or LDAP), giving the unix:user and unix:group selectors. Each
	// name is cached for a minute, but every new uid or gid costs a
	// lookup; a caller that matches no unix:user or unix:group selector
	// leaves it off.
	Names bool
	// SHA256 decides whether the executable is hashed (THREATS F12): it is
	// called with the process's selectors other than unix:sha256 (names
	// included when Names is set) and the executable is read only when it
	// returns true; registry.Registry.NeedsSHA256 is the usual choice. Nil
	// hashes always, within Options.HashSizeLimit.
	SHA256 func(selectors []string) bool
}

// WithNames returns p with its user and group names looked up and its
// selectors recomputed: p itself when it already has them, otherwise a
// copy (p is not modified; Processes are shared). Names depend only on the
// uid and gid SO_PEERCRED recorded at connect, which the Fingerprint
// holds, so they can be added to an attestation made without them.
func (a *Attestor) WithNames(p *Process) *Process {
	if p.NamesLookedUp {
		return p
	}
	q := *p
	a.lookupNames(&q)
	q.Selectors = selectors(&q)
	return &q
}

// lookupNames fills p's User and Group from its uid and gid.
func (a *Attestor) lookupNames(p *Process) {
	p.User = a.names.user(p.UID)
	p.Group = a.names.group(p.GID)
	p.NamesLookedUp = true
}
