package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/limen-gateway/limen/policy"
)

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	tokenRE  = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	hostRE   = regexp.MustCompile(`^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.?$`)
	paramRE  = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}`)
	statusRE = regexp.MustCompile(`^[1-5][0-9][0-9]$`)
)

// validHashOn reports whether s is a hash_on value: header:NAME or cookie:NAME with NAME an
// RFC 9110 token, client_ip, consumer or path.
func validHashOn(s string) bool {
	switch s {
	case "client_ip", "consumer", "path":
		return true
	}
	kind, name, _ := strings.Cut(s, ":")
	return (kind == "header" || kind == "cookie") && tokenRE.MatchString(name)
}

// validDNSName reports whether s is a DNS name: letters, digits, '_' and '-' in labels of at
// most 63 bytes (underscores start SRV owner names, RFC 2782), at most 253 bytes, with an optional
// trailing dot.
func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 || strings.HasPrefix(s, "*") || !hostRE.MatchString(strings.ToLower(s)) {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) > 63 {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// validate checks cross-field rules. Unknown keys and types were checked while walking.
func (d *Document) validate() Errors {
	var errs Errors
	fail := func(path, format string, args ...any) { errs = append(errs, d.Errorf(path, format, args...)) }
	c := d.Config

	listeners := map[string]bool{}
	for i, l := range c.Listeners {
		p := fmt.Sprintf("listeners[%d]", i)
		switch {
		case l.Name == "":
			fail(p+".name", "a listener needs a name")
		case !nameRE.MatchString(l.Name):
			fail(p+".name", "name %q may contain only letters, digits, '_', '.' and '-'", l.Name)
		case listeners[l.Name] || l.Name == "admin" || l.Name == "ops":
			fail(p+".name", "listener name %q is used twice or reserved", l.Name)
		}
		listeners[l.Name] = true
		if _, port, err := net.SplitHostPort(l.Addr); err != nil || !validPort(port) {
			fail(p+".addr", "address %q must be host:port, e.g. \":8080\" or \"127.0.0.1:8080\"", l.Addr)
		}
		for j, proto := range l.Protocols {
			if proto != "http1" && proto != "h2" && proto != "h2c" {
				fail(fmt.Sprintf("%s.protocols[%d]", p, j), "unknown protocol %q (want http1, h2 or h2c)", proto)
			}
		}
		if t := l.TLS; t != nil {
			if len(t.Certificates) == 0 {
				fail(p+".tls.certificates", "TLS needs at least one certificate")
			}
			checkClientAuth := func(path string, ca *ClientAuth) {
				if ca == nil {
					return
				}
				switch ca.Mode {
				case "", "require", "optional":
					if ca.CA == "" {
						fail(path+".ca", "client_auth needs a ca: the authorities client certificates must chain to")
					} else {
						d.fileExists(&errs, path+".ca", ca.CA)
					}
				case "none":
				default:
					fail(path+".mode", "mode %q: want require, optional or none", ca.Mode)
				}
			}
			checkClientAuth(p+".tls.client_auth", t.ClientAuth)
			for j, cert := range t.Certificates {
				cp := fmt.Sprintf("%s.tls.certificates[%d]", p, j)
				d.fileExists(&errs, cp+".cert", cert.Cert)
				d.fileExists(&errs, cp+".key", cert.Key)
				checkClientAuth(cp+".client_auth", cert.ClientAuth)
			}
			if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
				fail(p+".tls.min_version", "min_version %q: want \"1.2\" or \"1.3\"", t.MinVersion)
			}
		}
		switch l.ClientIP.Source {
		case "peer", "x_forwarded_for", "forwarded", "proxy_protocol":
		default:
			fail(p+".client_ip.source", "unknown source %q (want peer, x_forwarded_for, forwarded or proxy_protocol)", l.ClientIP.Source)
		}
		for j, cidr := range l.ClientIP.TrustedProxies {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				if _, err := netip.ParseAddr(cidr); err != nil {
					fail(fmt.Sprintf("%s.client_ip.trusted_proxies[%d]", p, j), "%q is not a CIDR or an IP address", cidr)
				}
			}
		}
		if l.ClientIP.Source == "proxy_protocol" && len(l.ClientIP.TrustedProxies) == 0 {
			fail(p+".client_ip.trusted_proxies", "proxy_protocol needs the load balancers that send the header in trusted_proxies; connections from other peers are refused")
		}
	}
	if e := c.Server.EscapedSlashes; e != "reject" && e != "keep" {
		fail("server.escaped_slashes", "want reject or keep, got %q", e)
	}

	if a := c.Admin; a != nil {
		host, port, err := net.SplitHostPort(a.Addr)
		if err != nil || !validPort(port) {
			fail("admin.addr", "address %q must be host:port", a.Addr)
		}
		loopback := host == "localhost"
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			loopback = true
		}
		names := map[string]bool{}
		hasToken := false
		for i, t := range a.Tokens {
			p := fmt.Sprintf("admin.tokens[%d]", i)
			if t.Name == "" || names[t.Name] {
				fail(p+".name", "each admin token needs a unique name")
			}
			names[t.Name] = true
			if len(t.Token) < 32 {
				fail(p+".token", "admin tokens must be at least 32 bytes (generate one with `openssl rand -hex 32`)")
			}
			if t.Scope != "read" && t.Scope != "write" {
				fail(p+".scope", "scope %q: want read or write", t.Scope)
			}
			hasToken = true
		}
		if !loopback && !hasToken {
			fail("admin.addr", "admin address %q is not loopback: configure admin.tokens", a.Addr)
		}
	}
	if o := c.Ops; o != nil {
		if _, port, err := net.SplitHostPort(o.Addr); err != nil || !validPort(port) {
			fail("ops.addr", "address %q must be host:port", o.Addr)
		}
	}

	for _, name := range sortedKeys(c.Upstreams) {
		u := c.Upstreams[name]
		p := "upstreams." + name
		if u == nil {
			fail(p, "empty upstream")
			continue
		}
		if !nameRE.MatchString(name) {
			fail(p, "upstream name %q may contain only letters, digits, '_', '.' and '-'", name)
		}
		hasDNS := u.Discovery != nil && u.Discovery.DNS != nil
		switch {
		case len(u.Targets) == 0 && !hasDNS:
			fail(p, "an upstream needs targets or discovery")
		case len(u.Targets) > 0 && hasDNS:
			fail(p, "targets and discovery are exclusive")
		}
		total := 0
		for i, t := range u.Targets {
			tp := fmt.Sprintf("%s.targets[%d]", p, i)
			total += t.Weight
			if t.Weight < 0 {
				fail(tp+".weight", "weight must not be negative")
			}
			pu, err := url.Parse(t.URL)
			switch {
			case err != nil:
				fail(tp+".url", "%v", err)
			case pu.Scheme != "http" && pu.Scheme != "https":
				fail(tp+".url", "URL %q: scheme must be http or https", t.URL)
			case pu.Host == "" || pu.Port() == "" && strings.Contains(pu.Host, ":"):
				fail(tp+".url", "URL %q needs a host", t.URL)
			case pu.User != nil || pu.RawQuery != "" || pu.Fragment != "" || (pu.Path != "" && pu.Path != "/"):
				fail(tp+".url", "URL %q must be scheme://host:port only (no path, query or credentials); use a route rewrite for paths", t.URL)
			}
		}
		if len(u.Targets) > 0 && total == 0 {
			fail(p+".targets", "at least one target needs a positive weight")
		}
		if hasDNS {
			dns, dp := u.Discovery.DNS, p+".discovery.dns"
			switch {
			case dns.SRV != "" && dns.Name != "":
				fail(dp+".srv", "srv and name are exclusive: set srv for SRV records or name and port for A/AAAA records")
			case dns.SRV != "":
				if !validDNSName(dns.SRV) {
					fail(dp+".srv", "srv %q is not a DNS name (e.g. _http._tcp.users.internal)", dns.SRV)
				}
				if dns.Port != 0 {
					fail(dp+".port", "port comes from the SRV records; remove it or use name for A/AAAA records")
				}
			case dns.Name == "":
				fail(dp, "a DNS name is required: name (with port) for A/AAAA records or srv for SRV records")
			default:
				if dns.Port <= 0 || dns.Port > 65535 {
					fail(dp+".port", "port must be 1-65535")
				}
			}
			if dns.Resolver != "" {
				if _, port, err := net.SplitHostPort(dns.Resolver); err != nil || port == "" {
					fail(dp+".resolver", "resolver %q must be host:port, e.g. 10.0.0.2:53", dns.Resolver)
				}
			}
			if dns.Scheme != "http" && dns.Scheme != "https" {
				fail(p+".discovery.dns.scheme", "scheme must be http or https")
			}
		}
		switch u.Balance {
		case "round_robin", "least_request", "ewma", "hash":
		default:
			fail(p+".balance", "unknown balancer %q (want round_robin, least_request, ewma or hash)", u.Balance)
		}
		switch {
		case u.Balance == "hash" && u.HashOn == "":
			fail(p+".balance", "balance: hash needs hash_on (header:NAME, cookie:NAME, client_ip, consumer or path)")
		case u.Balance == "hash":
			if !validHashOn(u.HashOn) {
				fail(p+".hash_on", "hash_on %q: want header:NAME, cookie:NAME, client_ip, consumer or path", u.HashOn)
			}
			if u.HashBalanceFactor < 1 {
				fail(p+".hash_balance_factor", "hash_balance_factor %g must be at least 1 (1.25 lets a target take 25%% more than the average)", u.HashBalanceFactor)
			}
		default:
			if u.HashOn != "" {
				fail(p+".hash_on", "hash_on applies only to balance: hash (balance is %s)", u.Balance)
			}
			if u.HashBalanceFactor != 0 {
				fail(p+".hash_balance_factor", "hash_balance_factor applies only to balance: hash (balance is %s)", u.Balance)
			}
		}
		if u.Balance != "ewma" && u.EWMADecay != 0 {
			fail(p+".ewma_decay", "ewma_decay applies only to balance: ewma (balance is %s)", u.Balance)
		}
		if u.Balance == "ewma" && u.EWMADecay.D() < time.Millisecond {
			fail(p+".ewma_decay", "ewma_decay must be at least 1ms")
		}
		if u.Protocol != "http1" && u.Protocol != "h2" && u.Protocol != "h2c" {
			fail(p+".protocol", "unknown protocol %q (want http1, h2 or h2c)", u.Protocol)
		}
		if a := u.Health.Active; a != nil {
			if !strings.HasPrefix(a.Path, "/") {
				fail(p+".health.active.path", "path must start with /")
			}
			if a.HealthyAfter < 1 || a.UnhealthyAfter < 1 {
				fail(p+".health.active", "healthy_after and unhealthy_after must be at least 1")
			}
		}
		if ps := u.Health.Passive; ps != nil {
			if ps.ConsecutiveFailures < 1 {
				fail(p+".health.passive.consecutive_failures", "must be at least 1")
			}
			if ps.MaxEjectionPercent < 0 || ps.MaxEjectionPercent > 100 {
				fail(p+".health.passive.max_ejection_percent", "must be 0-100")
			}
		}
		if r := u.Retries; r != nil {
			if r.Attempts < 0 || r.Attempts > 10 {
				fail(p+".retries.attempts", "attempts must be 0-10")
			}
			for i, on := range r.On {
				switch {
				case on == "connect_failure", on == "timeout", on == "reset":
				case statusRE.MatchString(on) && on >= "400":
				default:
					fail(fmt.Sprintf("%s.retries.on[%d]", p, i), "unknown retry condition %q (want connect_failure, timeout, reset or a 4xx/5xx status)", on)
				}
			}
		}
		if t := u.TLS; t != nil {
			d.fileExists(&errs, p+".tls.ca", t.CA)
			d.fileExists(&errs, p+".tls.cert", t.Cert)
			d.fileExists(&errs, p+".tls.key", t.Key)
			if (t.Cert == "") != (t.Key == "") {
				fail(p+".tls", "cert and key go together")
			}
		}
	}

	for _, name := range sortedKeys(c.Policies) {
		sp := c.Policies[name]
		p := "policies." + name
		if sp == nil {
			continue
		}
		if sp.Use != "" {
			fail(p, "a shared policy is an inline kind, not a use: reference")
		}
		d.checkPhase(&errs, p, sp)
	}

	routes := map[string]int{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			fail(p, "empty route")
			continue
		}
		switch {
		case r.Name == "":
			fail(p+".name", "a route needs a name")
		case !nameRE.MatchString(r.Name):
			fail(p+".name", "name %q may contain only letters, digits, '_', '.' and '-'", r.Name)
		default:
			if j, dup := routes[r.Name]; dup {
				fail(p+".name", "route name %q is also used by routes[%d]", r.Name, j)
			}
			routes[r.Name] = i
		}
		for j, l := range r.Listeners {
			if !listeners[l] {
				fail(fmt.Sprintf("%s.listeners[%d]", p, j), "no listener named %q", l)
			}
		}
		terminals := 0
		for _, set := range []bool{r.Upstream != "", r.Split != nil, r.Respond != nil} {
			if set {
				terminals++
			}
		}
		knownUpstream := func(path, name string) {
			if _, ok := c.Upstreams[name]; !ok {
				fail(path, "no upstream named %q (defined: %s)", name, strings.Join(sortedKeys(c.Upstreams), ", "))
			}
		}
		switch {
		case terminals > 1:
			fail(p, "a route has exactly one terminal: upstream, split or respond")
		case terminals == 0:
			fail(p, "a route needs a terminal: upstream, split or respond")
		case r.Upstream != "":
			knownUpstream(p+".upstream", r.Upstream)
		case r.Split != nil:
			d.validateSplit(p+".split", r.Split, knownUpstream, fail)
		}
		if r.Respond != nil && (r.Respond.Status < 100 || r.Respond.Status > 599) {
			fail(p+".respond.status", "status %d is not 100-599", r.Respond.Status)
		}
		for j, m := range r.Match.Methods {
			up := strings.ToUpper(m)
			if !tokenRE.MatchString(up) {
				fail(fmt.Sprintf("%s.match.methods[%d]", p, j), "%q is not a method", m)
			}
			r.Match.Methods[j] = up
		}
		for j, h := range r.Match.Hosts {
			lh := strings.ToLower(h)
			if !hostRE.MatchString(lh) {
				fail(fmt.Sprintf("%s.match.hosts[%d]", p, j), "%q is not a host name or a *.wildcard", h)
			}
			r.Match.Hosts[j] = lh
		}
		if !strings.HasPrefix(r.Match.Path, "/") {
			fail(p+".match.path", "path %q must start with /", r.Match.Path)
		}
		for k := range r.Match.Headers {
			if !tokenRE.MatchString(k) {
				fail(p+".match.headers."+k, "%q is not a header name", k)
			}
		}
		if rw := r.Rewrite; rw != nil {
			if r.Upstream == "" {
				fail(p+".rewrite", "rewrite applies to upstream routes only")
			}
			for _, f := range []struct{ name, v string }{{"strip_prefix", rw.StripPrefix}, {"add_prefix", rw.AddPrefix}, {"path", rw.Path}} {
				if f.v != "" && !strings.HasPrefix(f.v, "/") {
					fail(p+".rewrite."+f.name, "%q must start with /", f.v)
				}
			}
			if rw.Path != "" && (rw.StripPrefix != "" || rw.AddPrefix != "") {
				fail(p+".rewrite", "path replaces the whole path: do not combine it with strip_prefix or add_prefix")
			}
			have := map[string]bool{}
			for _, m := range paramRE.FindAllStringSubmatch(r.Match.Path, -1) {
				have[m[1]] = true
			}
			for _, m := range paramRE.FindAllStringSubmatch(rw.Path, -1) {
				if !have[m[1]] {
					fail(p+".rewrite.path", "{%s} is not captured by match.path %q", m[1], r.Match.Path)
				}
			}
			if rw.Host != "" && !hostRE.MatchString(strings.ToLower(rw.Host)) && !strings.Contains(rw.Host, ":") {
				fail(p+".rewrite.host", "%q is not a host name", rw.Host)
			}
		}
		if r.Upgrades != nil {
			for j, u := range *r.Upgrades {
				if strings.EqualFold(u, "h2c") {
					fail(fmt.Sprintf("%s.upgrades[%d]", p, j), "h2c upgrades are always refused: they would tunnel later requests past routing")
				}
			}
		}
		ids := map[string]bool{}
		for j, ps := range r.Policies {
			pp := fmt.Sprintf("%s.policies[%d]", p, j)
			if ps == nil {
				continue
			}
			if ps.Use != "" {
				if _, ok := c.Policies[ps.Use]; !ok {
					fail(pp+".use", "no shared policy named %q under top-level policies", ps.Use)
				}
				continue
			}
			d.checkPhase(&errs, pp, ps)
			if ps.ID != "" {
				if ids[ps.ID] {
					fail(pp+".id", "id %q is used twice", ps.ID)
				}
				ids[ps.ID] = true
			}
		}
	}
	d.validateConsumers(fail)
	d.validatePlans(fail)
	for _, name := range sortedKeys(c.Upstreams) {
		u := c.Upstreams[name]
		if u == nil || u.CircuitBreaker == nil {
			continue
		}
		b, p := u.CircuitBreaker, "upstreams."+name+".circuit_breaker"
		switch {
		case b.ConsecutiveFailures < 0 || b.MinRequests < 0 || b.HalfOpenRequests < 0:
			fail(p, "counts must not be negative")
		case b.FailureRatio < 0 || b.FailureRatio > 1:
			fail(p+".failure_ratio", "want a share between 0 and 1")
		case b.Window.D() < 100*time.Millisecond || b.OpenFor.D() < 100*time.Millisecond:
			fail(p, "window and open_for must be at least 100ms")
		}
		for i, st := range b.FailureStatuses {
			if st < 100 || st > 599 {
				fail(fmt.Sprintf("%s.failure_statuses[%d]", p, i), "%d is not an HTTP status", st)
			}
		}
		if b.Fallback != "" {
			if b.Fallback == name {
				fail(p+".fallback", "an upstream cannot be its own fallback")
			} else if _, ok := c.Upstreams[b.Fallback]; !ok {
				fail(p+".fallback", "no upstream named %q", b.Fallback)
			}
		}
	}
	if u := c.Usage; u != nil && (u.FlushInterval.D() < 100*time.Millisecond || u.Retention.D() < time.Hour) {
		fail("usage", "flush_interval must be at least 100ms and retention at least 1h")
	}
	if c.State != nil && c.State.Redis != nil {
		r := c.State.Redis
		if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			fail("state.redis.url", "want redis://host:port/db or rediss://host:port/db")
		} else if r.Cluster && strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0" {
			fail("state.redis.url", "a Redis Cluster has only database 0: drop the /db from the URL")
		}
		if r.PoolSize < 0 || r.Failures < 0 {
			fail("state.redis", "pool_size and failures must not be negative")
		}
		if r.Timeout.D() > 5*time.Second {
			fail("state.redis.timeout", "above 5s a slow Redis would hold every request that uses it")
		}
		if strings.ContainsAny(r.KeyPrefix, "{}") {
			// A brace in the prefix would become every key's hash tag (one slot for all) or
			// split the tags a script's keys share (CROSSSLOT).
			fail("state.redis.key_prefix", "must not contain { or }: they choose Redis Cluster slots")
		}
	}
	if c.Logging.Audit.PerSecond < 0 {
		fail("logging.audit.per_second", "must be positive")
	}
	return errs
}

var sha256HexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// minAPIKeyLen is the shortest API key accepted from the environment: 16 bytes of a random
// alphabet is the least that resists guessing at gateway request rates.
const minAPIKeyLen = 16

func (d *Document) validateConsumers(fail func(path, format string, args ...any)) {
	names := map[string]bool{}
	keys := map[string]string{}  // digest -> where it was first seen
	users := map[string]string{} // basic-auth username -> where
	certs := map[string]string{} // certificate identity -> where
	for i, c := range d.Config.Consumers {
		p := fmt.Sprintf("consumers[%d]", i)
		if c == nil {
			fail(p, "empty consumer")
			continue
		}
		switch {
		case c.Name == "":
			fail(p+".name", "a consumer needs a name")
		case !nameRE.MatchString(c.Name):
			fail(p+".name", "name %q may contain only letters, digits, '_', '.' and '-'", c.Name)
		case names[c.Name]:
			fail(p+".name", "consumer name %q is used twice", c.Name)
		}
		names[c.Name] = true
		for j, g := range c.Groups {
			if !nameRE.MatchString(g) {
				fail(fmt.Sprintf("%s.groups[%d]", p, j), "group %q may contain only letters, digits, '_', '.' and '-'", g)
			}
		}
		ids := map[string]bool{}
		for j, k := range c.Credentials.APIKeys {
			kp := fmt.Sprintf("%s.credentials.api_keys[%d]", p, j)
			var digest string
			switch {
			case k.SHA256 != "" && k.Key != "":
				fail(kp, "set sha256 or key, not both")
				continue
			case k.SHA256 != "":
				if !sha256HexRE.MatchString(k.SHA256) {
					fail(kp+".sha256", "want 64 lowercase hex digits, as `limen hash-key` prints")
					continue
				}
				digest = k.SHA256
			case k.Key != "":
				if len(k.Key) < minAPIKeyLen {
					fail(kp+".key", "the key is shorter than %d characters", minAPIKeyLen)
					continue
				}
				sum := sha256.Sum256([]byte(k.Key))
				digest = hex.EncodeToString(sum[:])
			default:
				fail(kp, "an API key needs sha256 (from `limen hash-key`) or key: \"${ENV}\"")
				continue
			}
			if k.ID != "" {
				if ids[k.ID] {
					fail(kp+".id", "credential id %q is used twice", k.ID)
				}
				ids[k.ID] = true
			}
			if prev, dup := keys[digest]; dup {
				fail(kp, "the same API key is already configured at %s: a key must identify one consumer", prev)
				continue
			}
			keys[digest] = kp
		}
		for j, cc := range c.Credentials.Certificates {
			cp := fmt.Sprintf("%s.credentials.certificates[%d]", p, j)
			n := 0
			for _, v := range []string{cc.Fingerprint, cc.URI, cc.DNS, cc.Email, cc.CommonName} {
				if v != "" {
					n++
				}
			}
			switch {
			case n != 1:
				fail(cp, "set exactly one of fingerprint, uri, dns, email and common_name")
				continue
			case cc.Fingerprint != "" && !sha256HexRE.MatchString(cc.Fingerprint):
				fail(cp+".fingerprint", "want the certificate's SHA-256 as 64 lowercase hex digits")
				continue
			}
			k := cc.Fingerprint + "|" + cc.URI + "|" + cc.DNS + "|" + cc.Email + "|" + cc.CommonName
			if prev, dup := certs[k]; dup {
				fail(cp, "the same certificate identity is already configured at %s", prev)
				continue
			}
			certs[k] = cp
		}
		for j, b := range c.Credentials.BasicAuth {
			bp := fmt.Sprintf("%s.credentials.basic_auth[%d]", p, j)
			switch {
			case b.Username == "" || strings.ContainsAny(b.Username, ":\r\n"):
				fail(bp+".username", "a username is required and may not contain ':' or line breaks")
			case users[b.Username] != "":
				fail(bp+".username", "username %q is already used at %s", b.Username, users[b.Username])
			default:
				users[b.Username] = bp
			}
			if !PasswordHashFormat(b.PasswordHash) {
				fail(bp+".password_hash", "want a bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$v=19$...) hash")
			}
		}
	}
}

// PasswordHashFormat reports whether h looks like a supported password hash. It checks the
// encoding only; verification belongs to the basic_auth policy.
func PasswordHashFormat(h string) bool {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		return len(h) == 60
	case strings.HasPrefix(h, "$argon2id$v=19$"):
		return strings.Count(h, "$") == 5
	}
	return false
}

func (d *Document) checkPhase(errs *Errors, path string, ps *PolicySpec) {
	if ps.Phase == "" || ps.Kind == "" {
		return
	}
	kind, ok := policy.Lookup(ps.Kind)
	if !ok {
		return
	}
	ph, err := policy.ParsePhase(ps.Phase)
	if err != nil {
		*errs = append(*errs, d.Errorf(path+".phase", "%v", err))
		return
	}
	if !kind.Phases.Contains(ph) {
		*errs = append(*errs, d.Errorf(path+".phase", "%s may run between %v and %v, not in %v", ps.Kind, kind.Phases.Min, kind.Phases.Max, ph))
	}
}

func (d *Document) fileExists(errs *Errors, path, file string) {
	if file == "" {
		return
	}
	if _, err := os.Stat(file); err != nil {
		*errs = append(*errs, d.Errorf(path, "cannot read %s: %v", file, err))
	}
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

func (d *Document) validateSplit(p string, sp *Split, knownUpstream func(path, name string), fail func(path, format string, args ...any)) {
	if len(sp.Weights) == 0 {
		fail(p+".weights", "a split needs weights, e.g. [{upstream: v1, weight: 95}, {upstream: v2, weight: 5}]")
	}
	total := 0
	for i, w := range sp.Weights {
		wp := fmt.Sprintf("%s.weights[%d]", p, i)
		knownUpstream(wp+".upstream", w.Upstream)
		if w.Weight < 0 {
			fail(wp+".weight", "weights must not be negative")
		}
		total += w.Weight
	}
	if len(sp.Weights) > 0 && total == 0 {
		fail(p+".weights", "at least one weight must be positive")
	}
	for i, r := range sp.Rules {
		rp := fmt.Sprintf("%s.rules[%d]", p, i)
		knownUpstream(rp+".upstream", r.Upstream)
		if len(r.Headers) == 0 && len(r.Cookies) == 0 {
			fail(rp, "a rule needs headers or cookies to match")
		}
	}
	switch kind, arg, _ := strings.Cut(sp.Sticky, ":"); kind {
	case "", "consumer", "client_ip":
		if arg != "" {
			fail(p+".sticky", "%s takes no argument", kind)
		}
	case "header", "cookie":
		if arg == "" || !tokenRE.MatchString(arg) {
			fail(p+".sticky", "%s needs a name, e.g. %s:X-User", kind, kind)
		}
	default:
		fail(p+".sticky", "sticky %q: want consumer, client_ip, header:NAME or cookie:NAME", sp.Sticky)
	}
}

func (d *Document) validatePlans(fail func(path, format string, args ...any)) {
	c := d.Config
	for _, name := range sortedKeys(c.Plans) {
		p := "plans." + name
		pl := c.Plans[name]
		if !nameRE.MatchString(name) {
			fail(p, "plan name %q may contain only letters, digits, '_', '.' and '-'", name)
		}
		if pl == nil || len(pl.RateLimits) == 0 && len(pl.Quotas) == 0 {
			fail(p, "a plan needs rate_limits or quotas")
			continue
		}
		for i, r := range pl.RateLimits {
			rp := fmt.Sprintf("%s.rate_limits[%d]", p, i)
			if r.Requests <= 0 || r.Per.D() < time.Millisecond || r.Burst < 0 {
				fail(rp, "want requests > 0, per >= 1ms and burst >= 0")
			}
		}
		for i, q := range pl.Quotas {
			qp := fmt.Sprintf("%s.quotas[%d]", p, i)
			if q.Requests <= 0 {
				fail(qp+".requests", "must be positive")
			}
			if q.Period != "day" && q.Period != "month" {
				fail(qp+".period", "period %q: want day or month", q.Period)
			}
			if q.TimeZone != "" {
				if _, err := time.LoadLocation(q.TimeZone); err != nil {
					fail(qp+".time_zone", "unknown time zone %q", q.TimeZone)
				}
			}
		}
	}
	for i, cons := range c.Consumers {
		if cons != nil && cons.Plan != "" {
			if _, ok := c.Plans[cons.Plan]; !ok && len(c.Plans) > 0 {
				fail(fmt.Sprintf("consumers[%d].plan", i), "no plan named %q under top-level plans", cons.Plan)
			}
		}
	}
}
