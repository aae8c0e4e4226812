package config

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/procmesh/procmesh/registry"
)

// sections names every mapping of the schema; "" is the top level and "[]"
// marks the items of a list.
func sections() []string {
	return []string{"", "listen", "identity", "identity.ca", "identity.spire", "cache", "attest", "trust_bundles[]",
		"workloads[]", "workloads[].allow", "routes[]", "routes[].jwt_svid", "policy", "policy.rules[]", "limits", "upstream", "upstream.quic",
		"reload", "shutdown", "runtime", "log", "inbound[]", "inbound[].policy", "inbound[].policy.rules[]", "admin"}
}

// keys lists the keys a section accepts, in the order messages show them.
func keys(section string) []string {
	switch section {
	case "":
		return []string{"trust_domain", "listen", "identity", "cache", "attest", "trust_bundles",
			"workloads", "routes", "policy", "limits", "upstream", "reload", "shutdown", "runtime", "log", "inbound", "admin"}
	case "listen":
		return []string{"socket", "mode", "group", "workload_api", "workload_api_ids"}
	case "identity":
		return []string{"provider", "state_dir", "ca", "svid_ttl", "jwt_svid_ttl", "jwt_key_rotation", "spire"}
	case "identity.spire":
		return []string{"admin_socket", "first_answer_timeout"}
	case "identity.ca":
		return []string{"cert", "key"}
	case "cache":
		return []string{"max_processes", "ttl"}
	case "attest":
		return []string{"connect_record", "foreign_writer", "hash_size_limit", "max_concurrent_hashes", "rate_per_uid", "burst_per_uid"}
	case "trust_bundles[]":
		return []string{"trust_domain", "file"}
	case "workloads[]":
		return []string{"spiffe_id", "selectors", "allow"}
	case "workloads[].allow":
		return []string{"traced", "injected_code"}
	case "routes[]":
		return []string{"name", "host", "upstream", "server_id", "server_trust_domain",
			"protocol", "alpn", "socket", "socket_mode", "jwt_svid", "preconnect"}
	case "routes[].jwt_svid":
		return []string{"audience", "header"}
	case "policy":
		return []string{"default", "rules"}
	case "policy.rules[]":
		return []string{"name", "from", "selectors", "to", "methods", "paths", "headers", "mode"}
	case "limits":
		return []string{"max_request_header_bytes", "max_request_headers", "max_response_header_bytes", "max_response_headers",
			"header_read_timeout", "idle_timeout", "request_timeout", "stream_idle_timeout",
			"max_concurrent_streams", "max_connections", "max_connections_per_identity", "max_unattested_connections_per_uid",
			"max_request_body_bytes"}
	case "upstream":
		return []string{"connect_timeout", "idle_timeout", "max_idle_per_pool", "response_header_timeout",
			"http2_read_idle_timeout", "copy_buffer_size", "tls_curves", "tls_record_sizing", "request_headers_to_remove", "quic"}
	case "upstream.quic":
		return []string{"max_incoming_streams", "idle_timeout", "keep_alive_period",
			"max_stream_receive_window", "max_connection_receive_window"}
	case "reload":
		return []string{"watch", "debounce"}
	case "shutdown":
		return []string{"drain_timeout"}
	case "runtime":
		return []string{"max_procs", "gc_percent", "memory_limit"}
	case "log":
		return []string{"level", "file", "flush_interval"}
	case "inbound[]":
		return []string{"name", "listen", "service", "protocol", "identity", "policy", "pass_identity"}
	case "inbound[].policy":
		return []string{"default", "rules"}
	case "inbound[].policy.rules[]":
		return []string{"name", "from", "methods", "paths", "headers", "mode"}
	case "admin":
		return []string{"listen", "allow_non_loopback", "pprof", "max_identity_labels"}
	}
	return nil
}

// decode walks the document's root mapping against the schema and builds a
// Config from the values that are well-formed. Absent keys stay zero, except
// Log.Level, Log.FlushInterval and Reload.Watch, whose zero values (debug,
// write at once, false) are not the defaults.
func (w *walker) decode(root *yaml.Node) *Config {
	c := &Config{Log: Log{Level: DefaultLogLevel, FlushInterval: DefaultLogFlushInterval}, Reload: Reload{Watch: DefaultReloadWatch}}
	top, ok := w.mapping(root, "", keys("")...)
	if !ok {
		return c
	}
	if n := w.require(top, "trust_domain", "the trust domain of this node's workloads, like example.org"); n != nil {
		c.TrustDomain, _ = w.trustDomain(n, "trust_domain")
	}
	if f, ok := w.mapping(top.get("listen"), "listen", keys("listen")...); ok {
		c.Listen.Socket, _ = w.socketPath(f.get("socket"), f.key("socket"))
		c.Listen.Mode, _ = w.mode(f.get("mode"), f.key("mode"))
		c.Listen.Group, _ = w.str(f.get("group"), f.key("group"))
		if n := f.get("workload_api"); n != nil {
			c.Listen.WorkloadAPI, _ = w.socketPath(n, f.key("workload_api"))
			if main := cmp.Or(c.Listen.Socket, DefaultSocket); c.Listen.WorkloadAPI == main {
				w.add(n.Line, f.key("workload_api"), "%s is already listen.socket; give the Workload API a socket of its own, like /run/procmesh/workload.sock", main)
			}
		}
		idsNode := f.get("workload_api_ids")
		ids, _ := w.list(idsNode, f.key("workload_api_ids"))
		for i, item := range ids {
			if id, ok := w.caller(item, fmt.Sprintf("%s[%d]", f.key("workload_api_ids"), i)); ok {
				c.Listen.WorkloadAPIIDs = append(c.Listen.WorkloadAPIIDs, id)
			}
		}
		if n := f.get("workload_api"); n != nil && c.Listen.WorkloadAPI != "" && len(ids) == 0 {
			w.add(n.Line, f.key("workload_api"), "the Workload API hands each caller its private key, so list in listen.workload_api_ids the SPIFFE IDs (or prefixes like spiffe://%s/team/*) whose processes may fetch theirs; spiffe://%s/* allows every identity of the trust domain",
				c.TrustDomain.Name(), c.TrustDomain.Name())
		}
	}
	if f, ok := w.mapping(top.get("identity"), "identity", keys("identity")...); ok {
		c.Identity.Provider, _ = w.oneOf(f.get("provider"), f.key("provider"), []string{"builtin", "spire"}, nil)
		c.Identity.StateDir, _ = w.absPath(f.get("state_dir"), f.key("state_dir"), DefaultStateDir)
		c.Identity.SVIDTTL, _ = w.duration(f.get("svid_ttl"), f.key("svid_ttl"), MinSVIDTTL, MaxSVIDTTL)
		c.Identity.JWTSVIDTTL, _ = w.duration(f.get("jwt_svid_ttl"), f.key("jwt_svid_ttl"), MinJWTSVIDTTL, MaxJWTSVIDTTL)
		c.Identity.JWTKeyRotation, _ = w.duration(f.get("jwt_key_rotation"), f.key("jwt_key_rotation"), MinJWTKeyRotation, MaxJWTKeyRotation)
		if sp, ok := w.mapping(f.get("spire"), "identity.spire", keys("identity.spire")...); ok {
			c.Identity.SPIRE.AdminSocket, _ = w.socketPath(sp.get("admin_socket"), sp.key("admin_socket"))
			c.Identity.SPIRE.FirstAnswerTimeout, _ = w.duration(sp.get("first_answer_timeout"), sp.key("first_answer_timeout"),
				100*time.Millisecond, 5*time.Minute)
		}
		if ca, ok := w.mapping(f.get("ca"), "identity.ca", keys("identity.ca")...); ok {
			c.Identity.CA.Cert, _ = w.absPath(ca.get("cert"), ca.key("cert"), "/etc/procmesh/ca.pem")
			c.Identity.CA.Key, _ = w.absPath(ca.get("key"), ca.key("key"), "/etc/procmesh/ca.key")
			if (str(ca.get("cert")) == "") != (str(ca.get("key")) == "") {
				w.add(ca.line, "identity.ca", "set both cert and key (operator CA) or neither (CA generated under state_dir)")
			}
		}
	}
	if f, ok := w.mapping(top.get("cache"), "cache", keys("cache")...); ok {
		c.Cache.MaxProcesses, _ = w.integer(f.get("max_processes"), f.key("max_processes"), 1, MaxMaxProcesses)
		c.Cache.TTL, _ = w.duration(f.get("ttl"), f.key("ttl"), MinCacheTTL, MaxCacheTTL)
	}
	w.attest(top.get("attest"), &c.Attest)
	items, _ := w.list(top.get("trust_bundles"), "trust_bundles")
	for i, n := range items {
		c.TrustBundles = append(c.TrustBundles, w.trustBundle(n, fmt.Sprintf("trust_bundles[%d]", i)))
	}
	items, _ = w.list(top.get("workloads"), "workloads")
	for i, n := range items {
		c.Workloads = append(c.Workloads, w.workload(n, fmt.Sprintf("workloads[%d]", i)))
	}
	items, _ = w.list(top.get("routes"), "routes")
	for i, n := range items {
		c.Routes = append(c.Routes, w.route(n, fmt.Sprintf("routes[%d]", i)))
	}
	if f, ok := w.mapping(top.get("policy"), "policy", keys("policy")...); ok {
		c.Policy.Default, _ = w.oneOf(f.get("default"), f.key("default"), []string{"allow", "deny"}, nil)
		items, _ = w.list(f.get("rules"), f.key("rules"))
		for i, n := range items {
			c.Policy.Rules = append(c.Policy.Rules, w.rule(n, fmt.Sprintf("policy.rules[%d]", i)))
		}
	}
	items, _ = w.list(top.get("inbound"), "inbound")
	for i, n := range items {
		c.Inbound = append(c.Inbound, w.inbound(n, fmt.Sprintf("inbound[%d]", i)))
	}
	w.limits(top.get("limits"), &c.Limits)
	w.upstream(top.get("upstream"), &c.Upstream)
	if f, ok := w.mapping(top.get("reload"), "reload", keys("reload")...); ok {
		if v := f.get("watch"); v != nil {
			c.Reload.Watch, _ = w.boolean(v, f.key("watch"))
		}
		c.Reload.Debounce, _ = w.duration(f.get("debounce"), f.key("debounce"), 10*time.Millisecond, time.Minute)
	}
	if f, ok := w.mapping(top.get("shutdown"), "shutdown", keys("shutdown")...); ok {
		c.Shutdown.DrainTimeout, _ = w.duration(f.get("drain_timeout"), f.key("drain_timeout"), time.Second, time.Hour)
	}
	if f, ok := w.mapping(top.get("runtime"), "runtime", keys("runtime")...); ok {
		if v := f.get("max_procs"); v != nil {
			c.Runtime.MaxProcs, _ = w.integer(v, f.key("max_procs"), 0, 4096)
		}
		c.Runtime.GCPercent, _ = w.integer(f.get("gc_percent"), f.key("gc_percent"), 10, 10000)
		c.Runtime.MemoryLimit, _ = w.size(f.get("memory_limit"), f.key("memory_limit"), 16*mib, 1<<40, true)
	}
	if f, ok := w.mapping(top.get("log"), "log", keys("log")...); ok {
		c.Log.Level, _ = w.logLevel(f.get("level"), f.key("level"))
		c.Log.File, _ = w.absPath(f.get("file"), f.key("file"), "/var/log/procmesh.log")
		if v := f.get("flush_interval"); v != nil && (v.Kind != yaml.ScalarNode || v.Value != "") {
			c.Log.FlushInterval, _ = w.durationOrOff(v, f.key("flush_interval"), time.Millisecond, time.Minute)
		}
	}
	w.admin(top.get("admin"), &c.Admin)
	return c
}

func (w *walker) trustBundle(n *yaml.Node, path string) TrustBundle {
	b := TrustBundle{Line: n.Line}
	f, ok := w.mapping(n, path, keys("trust_bundles[]")...)
	if !ok {
		w.notNull(n, path)
		return b
	}
	if v := w.require(f, "trust_domain", "the foreign trust domain, like upstream.test"); v != nil {
		b.TrustDomain, _ = w.trustDomain(v, f.key("trust_domain"))
	}
	if v := w.require(f, "file", "PEM file of its CA certificates"); v != nil {
		b.File, _ = w.absPath(v, f.key("file"), "/etc/procmesh/upstream-ca.pem")
	}
	return b
}

func (w *walker) workload(n *yaml.Node, path string) Workload {
	wl := Workload{Line: n.Line}
	f, ok := w.mapping(n, path, keys("workloads[]")...)
	if !ok {
		w.notNull(n, path)
		return wl
	}
	if v := w.require(f, "spiffe_id", "the ID these processes get, like spiffe://example.org/billing"); v != nil {
		wl.SPIFFEID, _ = w.spiffeID(v, f.key("spiffe_id"), "add a path, like spiffe://example.org/billing")
	}
	v := w.require(f, "selectors", `what a process must have, like ["unix:uid:1000", "unix:path:/usr/bin/billing"]`)
	items, ok := w.list(v, f.key("selectors"))
	if v != nil && ok && len(items) == 0 {
		w.add(v.Line, f.key("selectors"), "empty; an entry without selectors would match every process")
	}
	for i, item := range items {
		key := fmt.Sprintf("%s[%d]", f.key("selectors"), i)
		if s, ok := w.selector(item, key); ok {
			wl.Selectors = append(wl.Selectors, s)
		}
	}
	if a, ok := w.mapping(f.get("allow"), f.key("allow"), keys("workloads[].allow")...); ok {
		if v := a.get("traced"); v != nil {
			wl.Allow.Traced, _ = w.boolean(v, a.key("traced"))
		}
		if v := a.get("injected_code"); v != nil {
			wl.Allow.InjectedCode, _ = w.boolean(v, a.key("injected_code"))
		}
	}
	return wl
}

func (w *walker) route(n *yaml.Node, path string) Route {
	r := Route{Line: n.Line}
	f, ok := w.mapping(n, path, keys("routes[]")...)
	if !ok {
		w.notNull(n, path)
		return r
	}
	if v := w.require(f, "name", `used by policy rules, like "echo"`); v != nil {
		r.Name, _ = w.label(v, f.key("name"), "route name", "echo")
	}
	if v := w.require(f, "host", "the name clients use, like echo.test"); v != nil {
		r.Host, _ = w.hostName(v, f.key("host"))
	}
	if v := w.require(f, "upstream", "host:port to connect to, like 127.0.0.1:8443"); v != nil {
		r.Upstream, _ = w.hostPort(v, f.key("upstream"))
	}
	if v := f.get("server_id"); v != nil {
		r.ServerID, _ = w.spiffeID(v, f.key("server_id"), "use server_trust_domain to accept any ID of a trust domain")
	}
	r.ServerTrustDomain, _ = w.trustDomain(f.get("server_trust_domain"), f.key("server_trust_domain"))
	r.Protocol, _ = w.oneOf(f.get("protocol"), f.key("protocol"), []string{"tcp", "http1", "http2", "http3", "auto"}, nil)
	r.ALPN = w.alpn(f.get("alpn"), f.key("alpn"))
	r.Socket, _ = w.socketPath(f.get("socket"), f.key("socket"))
	r.JWTSVID = w.jwtSVID(f.get("jwt_svid"), f.key("jwt_svid"))
	r.Preconnect, _ = w.integer(f.get("preconnect"), f.key("preconnect"), 0, MaxPreconnect)
	if v := f.get("socket_mode"); v != nil {
		r.SocketMode, _ = w.mode(v, f.key("socket_mode"))
		if sock := f.get("socket"); r.SocketMode != 0 && (sock == nil || sock.Value == "") {
			w.add(v.Line, f.key("socket_mode"), "set without socket; socket_mode is the mode of the route's own socket")
		}
	}
	return r
}

// str is the text of a scalar, "" for nil.
func str(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}

// notNull reports a null list item, which mapping treats as absent.
func (w *walker) notNull(n *yaml.Node, path string) {
	if isNull(n) {
		w.add(n.Line, path, "empty item; remove the lone '-' or fill it in")
	}
}

// selector reads one selector string and checks its syntax with the
// registry's parser, so config and registry agree on what a selector is.
func (w *walker) selector(n *yaml.Node, key string) (string, bool) {
	s, ok := w.str(n, key)
	if !ok {
		return "", false
	}
	if _, _, err := registry.ParseSelector(s); err != nil {
		var se *registry.SelectorError
		if errors.As(err, &se) {
			w.add(n.Line, key, "%q: %s", s, se.Reason)
		} else {
			w.add(n.Line, key, "%v", err)
		}
		return "", false
	}
	return s, true
}
