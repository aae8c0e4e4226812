package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// altSvc is one alternative of an Alt-Svc response header (RFC 7838).
type altSvc struct {
	proto  string // ALPN protocol ID, percent-decoded ("h3")
	host   string // "" means the origin's own host
	port   int
	maxAge time.Duration
}

const (
	altSvcDefaultMaxAge = 24 * time.Hour      // RFC 7838 section 3.1
	altSvcMaxMaxAge     = 30 * 24 * time.Hour // a cap on what an upstream can pin
	altSvcMaxAlts       = 32                  // alternatives parsed per response
)

var errAltSvcSyntax = errors.New("malformed Alt-Svc")

// parseAltSvc parses the Alt-Svc field lines of one response. clear reports
// the value "clear" (forget every alternative). A malformed header is an
// error and should be ignored whole, as browsers do.
//
//	Alt-Svc       = clear / 1#alt-value
//	alt-value     = alternative *( OWS ";" OWS parameter )
//	alternative   = protocol-id "=" alt-authority
//	alt-authority = quoted-string   ; [ uri-host ] ":" port
//	parameter     = token "=" ( token / quoted-string )
func parseAltSvc(lines []string) (alts []altSvc, clear bool, err error) {
	s := strings.Join(lines, ",")
	if strings.EqualFold(strings.Trim(s, " \t"), "clear") {
		return nil, true, nil
	}
	p := &altSvcScanner{s: s}
	for {
		p.ows()
		if p.eat(',') { // empty list elements are allowed (RFC 9110 5.6.1)
			continue
		}
		if p.end() {
			break
		}
		a, ok, err := p.alternative()
		if err != nil {
			return nil, false, err
		}
		if ok {
			if len(alts) == altSvcMaxAlts {
				return nil, false, fmt.Errorf("%w: more than %d alternatives", errAltSvcSyntax, altSvcMaxAlts)
			}
			alts = append(alts, a)
		}
		p.ows()
		if !p.end() && !p.eat(',') {
			return nil, false, fmt.Errorf("%w: unexpected %q at offset %d", errAltSvcSyntax, p.s[p.i], p.i)
		}
	}
	return alts, false, nil
}

type altSvcScanner struct {
	s string
	i int
}

func (p *altSvcScanner) end() bool { return p.i >= len(p.s) }

func (p *altSvcScanner) ows() {
	for !p.end() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *altSvcScanner) eat(c byte) bool {
	if !p.end() && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *altSvcScanner) token() (string, bool) {
	start := p.i
	for !p.end() && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i], p.i > start
}

func (p *altSvcScanner) quoted() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	var b strings.Builder
	for !p.end() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return b.String(), true
		case c == '\\':
			if p.end() {
				return "", false
			}
			b.WriteByte(p.s[p.i])
			p.i++
		case c < 0x20 && c != '\t', c == 0x7f:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

// alternative parses one alt-value. ok is false for a well-formed
// alternative that is unusable (an invalid port or ma): it is skipped.
func (p *altSvcScanner) alternative() (a altSvc, ok bool, err error) {
	syntax := func(what string) error {
		return fmt.Errorf("%w: %s at offset %d", errAltSvcSyntax, what, p.i)
	}
	id, tok := p.token()
	if !tok || !p.eat('=') {
		return a, false, syntax("want protocol-id=\"authority\"")
	}
	auth, q := p.quoted()
	if !q {
		return a, false, syntax("want a quoted alt-authority")
	}
	ok = true
	a.maxAge = altSvcDefaultMaxAge
	if a.proto, err = url.PathUnescape(id); err != nil {
		ok = false
	}
	if a.host, a.port, err = splitAltAuthority(auth); err != nil {
		ok = false
	}
	for {
		save := p.i
		p.ows()
		if !p.eat(';') {
			p.i = save
			break
		}
		p.ows()
		name, tok := p.token()
		if !tok || !p.eat('=') {
			return a, false, syntax("want parameter=value")
		}
		val, tok := p.token()
		if !tok {
			if val, tok = p.quoted(); !tok {
				return a, false, syntax("want a parameter value")
			}
		}
		if strings.EqualFold(name, "ma") {
			secs, err := strconv.ParseUint(val, 10, 64)
			switch {
			case err != nil && errors.Is(err, strconv.ErrRange):
				a.maxAge = altSvcMaxMaxAge
			case err != nil:
				ok = false
			default:
				a.maxAge = time.Duration(min(secs, uint64(altSvcMaxMaxAge/time.Second))) * time.Second
			}
		}
	}
	return a, ok, nil
}

// splitAltAuthority splits [uri-host] ":" port.
func splitAltAuthority(s string) (host string, port int, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, errors.New("alt-authority without a port")
	}
	host, ps := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
		if net.ParseIP(host) == nil {
			return "", 0, fmt.Errorf("bad IPv6 literal %q", host)
		}
	} else if strings.IndexFunc(host, notHostChar) >= 0 {
		return "", 0, fmt.Errorf("bad host %q", host)
	}
	n, err := strconv.Atoi(ps)
	if err != nil || n < 1 || n > 65535 || ps[0] == '+' {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return host, n, nil
}

// notHostChar reports a rune that is not in a DNS name or IPv4 address.
func notHostChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
}

// isTokenChar reports RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
