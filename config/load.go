package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the configuration file read by Load and Parse.
const MaxFileSize = 4 << 20

// Load reads, checks and returns the configuration file at path. I/O errors
// are returned wrapped ("config: open ...: %w"); problems with the content
// are returned as one *Error listing each problem with FILE:LINE.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse checks data as the content of the configuration file name (used in
// messages and as Config.Path) and returns the configuration: decoded
// strictly, defaulted, validated. Every problem of a step is reported; the
// relations between settings are only validated once each setting on its
// own is well-formed, so that one typo does not show up as several errors.
func Parse(name string, data []byte) (*Config, error) {
	ps := &problems{file: name}
	root := parseYAML(ps, data)
	if root == nil {
		return nil, ps.err()
	}
	w := &walker{problems: ps}
	c := w.decode(root)
	if err := ps.err(); err != nil {
		sortProblems(ps.list)
		return nil, err
	}
	c.Path = name
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseYAML returns the root node of data's single document, or nil after
// recording why there is none.
func parseYAML(ps *problems, data []byte) *yaml.Node {
	if len(data) > MaxFileSize {
		ps.add(0, "", "file is larger than %d bytes", MaxFileSize)
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		ps.add(0, "", "file is empty; start from configs/example.yaml (trust_domain is required)")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.add(0, "", "file has no settings, only comments; start from configs/example.yaml (trust_domain is required)")
		} else {
			addYAMLError(ps, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		addYAMLError(ps, err)
		return nil
	default:
		ps.add(next.Line, "", "a second YAML document starts here; put all settings in one document (remove the '---')")
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		ps.add(doc.Line, "", "file has no settings; start from configs/example.yaml")
		return nil
	}
	root := doc.Content[0]
	if isNull(root) {
		ps.add(root.Line, "", "file has no settings; start from configs/example.yaml (trust_domain is required)")
		return nil
	}
	return root
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// addYAMLError turns a yaml.v3 syntax error into a Problem with its line.
func addYAMLError(ps *problems, err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		ps.add(line, "", "invalid YAML: %s", m[2])
		return
	}
	ps.add(0, "", "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// applyDefaults fills the settings left absent, null or "".
func (c *Config) applyDefaults() {
	if c.Listen.Socket == "" {
		c.Listen.Socket = DefaultSocket
	}
	if c.Listen.Mode == 0 {
		c.Listen.Mode = DefaultMode
	}
	if c.Identity.Provider == "" {
		c.Identity.Provider = DefaultProvider
	}
	if c.Identity.SPIRE.AdminSocket == "" {
		c.Identity.SPIRE.AdminSocket = DefaultSPIREAdminSocket
	}
	if c.Identity.SPIRE.FirstAnswerTimeout == 0 {
		c.Identity.SPIRE.FirstAnswerTimeout = DefaultSPIREFirstAnswerTimeout
	}
	if c.Identity.StateDir == "" {
		c.Identity.StateDir = DefaultStateDir
	}
	if c.Identity.SVIDTTL == 0 {
		c.Identity.SVIDTTL = DefaultSVIDTTL
	}
	if c.Identity.JWTSVIDTTL == 0 {
		c.Identity.JWTSVIDTTL = DefaultJWTSVIDTTL
	}
	if c.Identity.JWTKeyRotation == 0 {
		c.Identity.JWTKeyRotation = DefaultJWTKeyRotation
	}
	if c.Cache.MaxProcesses == 0 {
		c.Cache.MaxProcesses = DefaultMaxProcesses
	}
	if c.Cache.TTL == 0 {
		c.Cache.TTL = DefaultCacheTTL
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.JWTSVID.On() && r.JWTSVID.Header == "" {
			r.JWTSVID.Header = DefaultJWTSVIDHeader
		}
		if r.Protocol == "" {
			r.Protocol = DefaultProtocol
		}
		if r.SocketMode == 0 {
			r.SocketMode = c.Listen.Mode
		}
	}
	if c.Policy.Default == "" {
		c.Policy.Default = DefaultPolicy
	}
	for i := range c.Policy.Rules {
		r := &c.Policy.Rules[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("rule[%d]", i)
		}
		if r.Mode == "" {
			r.Mode = DefaultRuleMode
		}
	}
	c.applyLimitDefaults()
	c.applyAttestDefaults()
	c.applyInboundDefaults()
}

// applyLimitDefaults fills limits, upstream, reload and shutdown. A zero
// that means "off" is its own default.
func (c *Config) applyLimitDefaults() {
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setSize := func(v *int64, def int64) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	l := &c.Limits
	setSize(&l.MaxRequestHeaderBytes, DefaultMaxRequestHeaderBytes)
	setInt(&l.MaxRequestHeaders, DefaultMaxRequestHeaders)
	setSize(&l.MaxResponseHeaderBytes, DefaultMaxResponseHeaderBytes)
	setInt(&l.MaxResponseHeaders, DefaultMaxResponseHeaders)
	setDur(&l.HeaderReadTimeout, DefaultHeaderReadTimeout)
	setDur(&l.IdleTimeout, DefaultIdleTimeout)
	setDur(&l.StreamIdleTimeout, DefaultStreamIdleTimeout)
	setInt(&l.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setInt(&l.MaxConnectionsPerIdentity, DefaultMaxConnectionsPerIdentity)
	setInt(&l.MaxUnattestedConnectionsPerUID, DefaultMaxUnattestedConnectionsPerUID)
	u := &c.Upstream
	setDur(&u.ConnectTimeout, DefaultConnectTimeout)
	setDur(&u.IdleTimeout, DefaultUpstreamIdleTimeout)
	setInt(&u.MaxIdlePerPool, DefaultMaxIdlePerPool)
	setDur(&u.HTTP2ReadIdleTimeout, DefaultHTTP2ReadIdleTimeout)
	setSize(&u.CopyBufferSize, DefaultCopyBufferSize)
	if u.TLSRecordSizing == "" {
		u.TLSRecordSizing = "dynamic"
	}
	if u.RequestHeadersToRemove == nil {
		u.RequestHeadersToRemove = DefaultRequestHeadersToRemove()
	}
	setInt(&c.Runtime.GCPercent, DefaultGCPercent)
	q := &c.Upstream.QUIC
	setSize(&q.MaxIncomingStreams, DefaultQUICMaxIncomingStreams)
	setDur(&q.IdleTimeout, DefaultQUICIdleTimeout)
	setDur(&q.KeepAlivePeriod, DefaultQUICKeepAlivePeriod)
	setSize(&q.MaxStreamReceiveWindow, DefaultQUICMaxStreamReceiveWindow)
	setSize(&q.MaxConnectionReceiveWindow, DefaultQUICMaxConnectionReceiveWindow)
	setDur(&c.Reload.Debounce, DefaultReloadDebounce)
	setDur(&c.Shutdown.DrainTimeout, DefaultDrainTimeout)
	setInt(&c.Admin.MaxIdentityLabels, DefaultMaxIdentityLabels)
}

func sortProblems(list []Problem) {
	sort.SliceStable(list, func(i, j int) bool { return list[i].Line < list[j].Line })
}
