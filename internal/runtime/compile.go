package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/limen-gateway/limen/internal/audit"
	"github.com/limen-gateway/limen/internal/breaker"
	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/internal/proxy"
	"github.com/limen-gateway/limen/internal/router"
	"github.com/limen-gateway/limen/internal/split"
	"github.com/limen-gateway/limen/internal/state"
	"github.com/limen-gateway/limen/internal/telemetry"
	"github.com/limen-gateway/limen/internal/upstream"
	"github.com/limen-gateway/limen/internal/usage"
	"github.com/limen-gateway/limen/policy"
)

// builder compiles one document. In dry-run mode it provisions nothing that talks to the network
// or starts goroutines (no upstream pools, no access log): `limen validate`, `limen explain` and
// the admin dry run use it.
type builder struct {
	doc     *config.Document
	cfg     *config.Config
	pool    policy.Pool
	log     *slog.Logger
	metrics *telemetry.Metrics
	dryRun  bool

	snap      *Snapshot
	errs      config.Errors
	shared    map[string]sharedPolicy
	consumers *consumer.Directory
	engines   map[string]any // shared-state engines for policies (BuildContext.Shared)
}

type sharedPolicy struct {
	p     policy.Policy
	kind  *policy.Kind
	phase policy.Phase
}

func (b *builder) fail(path, format string, args ...any) {
	b.errs = append(b.errs, b.doc.Errorf(path, format, args...))
}

// compile builds a snapshot from doc. On error everything built so far is released.
func compile(doc *config.Document, pool policy.Pool, metrics *telemetry.Metrics, log *slog.Logger, dryRun bool) (*Snapshot, error) {
	b := &builder{
		doc: doc, cfg: doc.Config, pool: pool, log: log, metrics: metrics, dryRun: dryRun,
		snap: &Snapshot{
			Doc: doc, Hash: doc.Hash,
			byName:    map[string]*Route{},
			listeners: map[string]*listenerRoutes{},
			upstreams: map[string]*upstream.Upstream{},
		},
		shared:    map[string]sharedPolicy{},
		consumers: consumer.New(doc.Config.Consumers),
	}
	b.buildAccessLog()
	b.buildAuditLog()
	b.buildStateEngines()
	b.buildUsage()
	b.buildUpstreams()
	b.buildSharedPolicies()
	b.buildRoutes()
	b.buildTables()
	if len(b.errs) > 0 {
		b.snap.close()
		return nil, b.errs
	}
	return b.snap, nil
}

func (b *builder) buildAccessLog() {
	out := b.cfg.Logging.Access.Output
	if b.dryRun || out == "" || out == "off" {
		return
	}
	buf := b.cfg.Logging.Access.Buffer
	obj, release, err := b.pool.Acquire("accesslog/"+out+"/"+strconv.Itoa(buf), func() (any, error) {
		return telemetry.NewAccessLog(out, buf)
	})
	if err != nil {
		b.fail("logging.access.output", "%v", err)
		return
	}
	b.snap.releases = append(b.snap.releases, release)
	b.snap.access = obj.(*telemetry.AccessLog)
}

func (b *builder) buildAuditLog() {
	a := b.cfg.Logging.Audit
	if b.dryRun || a.Output == "" || a.Output == "off" {
		return
	}
	key := "auditlog/" + a.Output + "/" + strconv.FormatFloat(a.PerSecond, 'g', -1, 64)
	obj, release, err := b.pool.Acquire(key, func() (any, error) {
		return audit.Open(audit.Options{Output: a.Output, PerSecond: a.PerSecond})
	})
	if err != nil {
		b.fail("logging.audit.output", "%v", err)
		return
	}
	b.snap.releases = append(b.snap.releases, release)
	b.snap.audit = obj.(*audit.Log)
}

// buildStateEngines connects (lazily) to the configured shared-state engines. A Redis client is
// pooled by its settings, so reloads keep its connections.
func (b *builder) buildStateEngines() {
	b.engines = map[string]any{}
	b.snap.engines = b.engines
	if len(b.cfg.Plans) > 0 {
		b.engines["plans"] = plans(b.cfg.Plans)
	}
	st := b.cfg.State
	if st == nil || st.Redis == nil {
		return
	}
	r := st.Redis
	key := fmt.Sprintf("state/redis|%s|%t|%d|%s|%s|%d|%s", r.URL, r.Cluster, r.PoolSize, r.Timeout.D(), r.KeyPrefix, r.Failures, r.OpenFor.D())
	obj, release, err := b.pool.Acquire(key, func() (any, error) {
		return state.NewRedis(state.RedisOptions{URL: r.URL, Cluster: r.Cluster, PoolSize: r.PoolSize, Timeout: r.Timeout.D(),
			KeyPrefix: r.KeyPrefix, Failures: r.Failures, OpenFor: r.OpenFor.D(), Log: b.log.With("component", "redis")})
	})
	if err != nil {
		b.fail("state.redis", "%v", err)
		return
	}
	b.snap.releases = append(b.snap.releases, release)
	b.engines["redis"] = obj
}

// buildUsage starts (or keeps, through the pool) the usage meter. Its store is Redis when
// state.redis is configured, so every node counts into the same totals.
func (b *builder) buildUsage() {
	u := b.cfg.Usage
	if u == nil || b.dryRun {
		return
	}
	var store usage.Store
	storeKey := "redis"
	if r, _ := b.engines["redis"].(*state.Redis); r != nil {
		// Batches wait at most usage.Options' MaxPending (360) flushes: markers outlast that.
		store = r.UsageStore(u.Retention.D(), 360*u.FlushInterval.D()+10*time.Minute)
		storeKey = fmt.Sprintf("redis|%p", r)
	} else {
		// The in-memory totals are pooled on their own, keyed only by being in memory: a reload
		// that changes the flush interval or the retention keeps them.
		obj, release, err := b.pool.Acquire("usage-store|memory", func() (any, error) {
			return usage.NewMemoryStore(u.Retention.D()), nil
		})
		if err != nil {
			b.fail("usage", "%v", err)
			return
		}
		b.snap.releases = append(b.snap.releases, release)
		store, storeKey = obj.(usage.Store), "memory"
	}
	key := fmt.Sprintf("usage|%s|%s|%s", u.FlushInterval.D(), u.Retention.D(), storeKey)
	obj, release, err := b.pool.Acquire(key, func() (any, error) {
		return usage.New(usage.Options{Store: store, FlushInterval: u.FlushInterval.D(), Log: b.log.With("component", "usage")}), nil
	})
	if err != nil {
		b.fail("usage", "%v", err)
		return
	}
	b.snap.releases = append(b.snap.releases, release)
	b.snap.usage = obj.(*usage.Meter)
}

// plans turns the config's plans into what the plan policy counts with. Time zones were
// validated; a burst of 0 means one period's worth of requests.
func plans(cfg map[string]*config.Plan) map[string]state.Plan {
	out := make(map[string]state.Plan, len(cfg))
	for name, p := range cfg {
		if p == nil {
			continue
		}
		sp := state.Plan{Name: name}
		for _, r := range p.RateLimits {
			burst := r.Burst
			if burst == 0 {
				burst = r.Requests
			}
			sp.Limits = append(sp.Limits, state.Limit{Requests: r.Requests, Per: r.Per.D(), Burst: burst})
		}
		for _, q := range p.Quotas {
			loc := time.UTC
			if q.TimeZone != "" {
				if l, err := time.LoadLocation(q.TimeZone); err == nil {
					loc = l
				}
			}
			sp.Quotas = append(sp.Quotas, state.Quota{Requests: q.Requests, Period: q.Period, Location: loc})
		}
		out[name] = sp
	}
	return out
}

func (b *builder) buildUpstreams() {
	names := make([]string, 0, len(b.cfg.Upstreams))
	for n := range b.cfg.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if b.dryRun {
			continue
		}
		u := b.cfg.Upstreams[name]
		opts, err := upstreamOptions(name, u)
		if err != nil {
			b.fail("upstreams."+name, "%v", err)
			continue
		}
		up, err := upstream.New(opts, b.pool, b.log.With("upstream", name))
		if err != nil {
			b.fail("upstreams."+name, "%v", err)
			continue
		}
		b.snap.upstreams[name] = up
	}
}

func upstreamOptions(name string, u *config.Upstream) (upstream.Options, error) {
	o := upstream.Options{Name: name, Balance: u.Balance, HashOn: u.HashOn,
		HashBalanceFactor: u.HashBalanceFactor, EWMADecay: u.EWMADecay.D()}
	for _, t := range u.Targets {
		parsed, err := url.Parse(t.URL)
		if err != nil {
			return o, fmt.Errorf("target %q: %w", t.URL, err)
		}
		o.Targets = append(o.Targets, upstream.TargetSpec{URL: parsed, Weight: t.Weight})
	}
	if d := u.Discovery; d != nil && d.DNS != nil {
		o.DNS = &upstream.DNSOptions{Name: d.DNS.Name, Port: d.DNS.Port, SRV: d.DNS.SRV, Scheme: d.DNS.Scheme,
			Refresh: d.DNS.Refresh.D(), Resolver: d.DNS.Resolver}
	}
	if a := u.Health.Active; a != nil {
		o.Active = &upstream.ActiveCheck{Path: a.Path, Interval: a.Interval.D(), Timeout: a.Timeout.D(),
			HealthyAfter: a.HealthyAfter, UnhealthyAfter: a.UnhealthyAfter, ExpectStatus: a.ExpectStatus}
	}
	if p := u.Health.Passive; p != nil {
		o.Passive = &upstream.PassiveCheck{ConsecutiveFailures: p.ConsecutiveFailures,
			EjectFor: p.EjectFor.D(), MaxEjectionPercent: p.MaxEjectionPercent}
	}
	o.Transport = upstream.TransportOptions{
		ConnectTimeout:        u.Timeouts.Connect.D(),
		ResponseHeaderTimeout: u.Timeouts.ResponseHeader.D(),
		IdleTimeout:           u.Timeouts.Idle.D(),
		Protocol:              u.Protocol,
		MaxConnsPerTarget:     u.MaxConnsPerTarget,
	}
	if t := u.TLS; t != nil {
		o.Transport.CAFile, o.Transport.CertFile, o.Transport.KeyFile, o.Transport.ServerName = t.CA, t.Cert, t.Key, t.ServerName
	}
	if r := u.Retries; r != nil {
		o.Retry = upstream.RetryPolicy{Attempts: r.Attempts, Budget: float64(r.Budget) / 100,
			Backoff: r.Backoff.D(), MaxBody: int64(r.MaxBody)}
		for _, on := range r.On {
			switch on {
			case "connect_failure":
				o.Retry.OnConnectFailure = true
			case "timeout":
				o.Retry.OnTimeout = true
			case "reset":
				o.Retry.OnReset = true
			default:
				code, err := strconv.Atoi(on)
				if err != nil {
					return o, fmt.Errorf("retries.on: unknown outcome %q", on)
				}
				o.Retry.OnStatus = append(o.Retry.OnStatus, code)
			}
		}
	}
	return o, nil
}

func (b *builder) buildSharedPolicies() {
	names := make([]string, 0, len(b.cfg.Policies))
	for n := range b.cfg.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		spec := b.cfg.Policies[name]
		path := "policies." + name
		p, kind, phase, ok := b.buildPolicy(path, spec, name, "")
		if ok {
			b.shared[name] = sharedPolicy{p: p, kind: kind, phase: phase}
		}
	}
}

func (b *builder) buildPolicy(path string, spec *config.PolicySpec, id, route string) (policy.Policy, *policy.Kind, policy.Phase, bool) {
	kind, ok := policy.Lookup(spec.Kind)
	if !ok {
		b.fail(path, "unknown policy kind %q (known: %s)", spec.Kind, strings.Join(policy.Kinds(), ", "))
		return nil, nil, 0, false
	}
	phase := kind.Phases.Default
	if spec.Phase != "" {
		ph, err := policy.ParsePhase(spec.Phase)
		if err != nil || !kind.Phases.Contains(ph) {
			b.fail(path+".phase", "phase %q is not allowed for %s (allowed %v..%v)", spec.Phase, spec.Kind, kind.Phases.Min, kind.Phases.Max)
			return nil, nil, 0, false
		}
		phase = ph
	}
	bc := policy.BuildContext{
		ID: id, Kind: spec.Kind, Route: route, Pool: b.pool, BaseDir: b.doc.BaseDir,
		Logger: b.log.With("policy", id), Consumers: b.consumers, Shared: b.engines,
	}
	p, err := kind.Build(bc, json.RawMessage(spec.Config))
	if err != nil {
		b.fail(path+"."+spec.Kind, "%v", err)
		return nil, nil, 0, false
	}
	if c, ok := p.(policy.Closer); ok && spec.Use == "" {
		b.snap.closers = append(b.snap.closers, c)
	}
	return p, kind, phase, true
}

type chainEntry struct {
	step   ChainStep
	phase  policy.Phase
	policy policy.Policy
}

func (b *builder) buildRoutes() {
	for i, rc := range b.cfg.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		r := &Route{Name: rc.Name, Config: rc, listeners: rc.Listeners}
		if rc.Upgrades == nil {
			r.upgrades = []string{"websocket"}
		} else {
			r.upgrades = *rc.Upgrades
		}
		var entries []chainEntry
		for j, ps := range rc.Policies {
			ppath := fmt.Sprintf("%s.policies[%d]", path, j)
			if ps.Use != "" {
				sp, ok := b.shared[ps.Use]
				if !ok {
					if _, declared := b.cfg.Policies[ps.Use]; !declared {
						b.fail(ppath+".use", "no shared policy named %q under top-level policies", ps.Use)
					}
					continue
				}
				entries = append(entries, chainEntry{
					step:  ChainStep{ID: ps.Use, Kind: sp.kind.Name, Phase: sp.phase.String(), Shared: true},
					phase: sp.phase, policy: sp.p,
				})
				continue
			}
			id := ps.ID
			if id == "" {
				id = fmt.Sprintf("routes/%s/%s#%d", rc.Name, ps.Kind, j)
			}
			p, kind, phase, ok := b.buildPolicy(ppath, ps, id, rc.Name)
			if !ok {
				continue
			}
			entries = append(entries, chainEntry{
				step:  ChainStep{ID: id, Kind: kind.Name, Phase: phase.String()},
				phase: phase, policy: p,
			})
		}
		// Phase order, then YAML order within a phase (the sort is stable).
		slices.SortStableFunc(entries, func(a, b chainEntry) int { return int(a.phase - b.phase) })

		terminal, name, ok := b.terminal(path, rc, r)
		if !ok {
			continue
		}
		r.Terminal = name
		h := attribute(terminal, name)
		for k := len(entries) - 1; k >= 0; k-- {
			h = attribute(entries[k].policy.Wrap(h), entries[k].step.ID)
		}
		for _, e := range entries {
			r.Chain = append(r.Chain, e.step)
			rep, _ := e.policy.(policy.Reporter)
			r.reporters = append(r.reporters, rep)
		}
		r.handler = h
		if b.metrics != nil && !b.dryRun {
			r.metrics = b.metrics.Route(rc.Name)
		}
		b.snap.routes = append(b.snap.routes, r)
		b.snap.byName[r.Name] = r
	}
}

// attribute records, on the way out, which chain step produced an error: the innermost one wins,
// so the access log and the denial metric name the policy that refused the request.
func attribute(h policy.Handler, id string) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		err := h.ServeHTTP(w, r)
		if err != nil {
			if ex := policy.ExchangeFrom(r.Context()); ex != nil && ex.DeniedBy == "" {
				ex.DeniedBy = id
			}
		}
		return err
	})
}

func (b *builder) terminal(path string, rc *config.Route, r *Route) (policy.Handler, string, bool) {
	switch {
	case rc.Respond != nil:
		return newRespond(rc.Respond), "respond", true
	case rc.Split != nil:
		return b.splitTerminal(path+".split", rc, r)
	case rc.Upstream != "":
		h, ok := b.proxyTerminal(path, rc, r, rc.Upstream)
		return h, "upstream:" + rc.Upstream, ok
	default:
		b.fail(path, "a route needs a terminal: upstream, split or respond")
		return nil, "", false
	}
}

// splitTerminal builds one proxy per upstream the split names and the split in front of them.
func (b *builder) splitTerminal(path string, rc *config.Route, r *Route) (policy.Handler, string, bool) {
	sp := rc.Split
	proxies := map[string]policy.Handler{}
	get := func(name string) (policy.Handler, bool) {
		if h, ok := proxies[name]; ok {
			return h, true
		}
		h, ok := b.proxyTerminal(path, rc, r, name)
		proxies[name] = h
		return h, ok
	}
	o := split.Options{CookieMaxAge: 30 * 24 * 3600}
	o.StickyKind, o.StickyArg, _ = strings.Cut(sp.Sticky, ":")
	if o.StickyKind == "header" {
		o.StickyArg = http.CanonicalHeaderKey(o.StickyArg)
	}
	names := make([]string, 0, len(sp.Weights))
	for _, rule := range sp.Rules {
		h, ok := get(rule.Upstream)
		if !ok {
			return nil, "", false
		}
		hdrs := map[string]string{}
		for k, v := range rule.Headers {
			hdrs[http.CanonicalHeaderKey(k)] = v
		}
		o.Rules = append(o.Rules, split.Rule{Headers: hdrs, Cookies: rule.Cookies, Handler: h})
	}
	for _, w := range sp.Weights {
		h, ok := get(w.Upstream)
		if !ok {
			return nil, "", false
		}
		o.Sides = append(o.Sides, split.Side{Weight: w.Weight, Handler: h})
		names = append(names, fmt.Sprintf("%s=%d", w.Upstream, w.Weight))
	}
	return split.New(o), "split:" + strings.Join(names, ","), true
}

// proxyTerminal is the proxy to upstream name with the route's settings, behind the upstream's
// circuit breaker when it has one.
func (b *builder) proxyTerminal(path string, rc *config.Route, r *Route, name string) (policy.Handler, bool) {
	h, ok := b.rawProxy(path, rc, r, name)
	if !ok || b.dryRun {
		return h, ok
	}
	uc := b.cfg.Upstreams[name]
	if uc == nil || uc.CircuitBreaker == nil {
		return h, true
	}
	brk, ok := b.upstreamBreaker(name, uc.CircuitBreaker)
	if !ok {
		return nil, false
	}
	retry := strconv.FormatInt(int64((uc.CircuitBreaker.OpenFor.D()+time.Second-1)/time.Second), 10)
	var open policy.Handler = policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return &policy.Error{Status: http.StatusServiceUnavailable, Code: "circuit_open",
			Detail: "the upstream is failing; retry after the time in Retry-After", Header: http.Header{"Retry-After": {retry}}}
	})
	if fb := uc.CircuitBreaker.Fallback; fb != "" {
		if open, ok = b.rawProxy(path, rc, r, fb); !ok {
			return nil, false
		}
	}
	return brk.Wrap(h, open), true
}

// upstreamBreaker is the upstream's breaker, shared by every route and kept across reloads
// through the pool (keyed by the upstream and its breaker settings).
func (b *builder) upstreamBreaker(name string, c *config.UpstreamBreaker) (*breaker.Breaker, bool) {
	if brk, ok := b.snap.breakers[name]; ok {
		return brk, true
	}
	settings, _ := json.Marshal(c)
	log := b.log
	obj, release, err := b.pool.Acquire("upstream-breaker|"+name+"|"+string(settings), func() (any, error) {
		return breaker.New(breaker.Settings{Name: name, ConsecutiveFailures: c.ConsecutiveFailures, FailureRatio: c.FailureRatio,
			MinRequests: c.MinRequests, Window: c.Window.D(), SlowCall: c.SlowCall.D(), OpenFor: c.OpenFor.D(),
			HalfOpenRequests: c.HalfOpenRequests, FailureStatuses: c.FailureStatuses,
			OnStateChange: func(from, to string) {
				log.Warn("upstream circuit breaker state changed", "upstream", name, "from", from, "to", to)
			}}), nil
	})
	if err != nil {
		b.fail("upstreams."+name+".circuit_breaker", "%v", err)
		return nil, false
	}
	b.snap.releases = append(b.snap.releases, release)
	if b.snap.breakers == nil {
		b.snap.breakers = map[string]*breaker.Breaker{}
	}
	brk := obj.(*breaker.Breaker)
	b.snap.breakers[name] = brk
	return brk, true
}

// rawProxy builds the proxy to upstream name with the route's proxy settings.
func (b *builder) rawProxy(path string, rc *config.Route, r *Route, name string) (policy.Handler, bool) {
	if b.dryRun {
		return policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }), true
	}
	up, ok := b.snap.upstreams[name]
	if !ok {
		if _, declared := b.cfg.Upstreams[name]; !declared {
			b.fail(path+".upstream", "no upstream named %q", name)
		}
		return nil, false
	}
	opts := proxy.Options{
		Route: rc.Name, Upstream: up, PreserveHost: rc.PreserveHost,
		Timeout: rc.Timeout.D(), StreamIdleTimeout: rc.StreamIdleTimeout.D(),
		Upgrades: r.upgrades,
		Identity: proxy.IdentityHeaders(b.cfg.Server.IdentityHeaders),
	}
	if rw := rc.Rewrite; rw != nil {
		opts.RewriteHost = rw.Host
		fn, err := pathRewriter(rw)
		if err != nil {
			b.fail(path+".rewrite.path", "%v", err)
			return nil, false
		}
		opts.RewritePath = fn
	}
	if rr := rc.Retries; rr != nil {
		opts.NonIdempotent, opts.PerTryTimeout, opts.Attempts = rr.NonIdempotent, rr.PerTryTimeout.D(), rr.Attempts
	}
	h, err := proxy.New(opts)
	if err != nil {
		b.fail(path, "%v", err)
		return nil, false
	}
	return h, true
}

func (b *builder) buildTables() {
	names := make([]string, 0, len(b.cfg.Listeners))
	for _, l := range b.cfg.Listeners {
		names = append(names, l.Name)
	}
	for _, ln := range names {
		lr := &listenerRoutes{}
		var specs []router.Route
		var index []int // position in cfg.Routes, for error positions
		for i, r := range b.snap.routes {
			if len(r.listeners) > 0 && !slices.Contains(r.listeners, ln) {
				continue
			}
			m := r.Config.Match
			specs = append(specs, router.Route{Hosts: m.Hosts, Path: m.Path, Methods: m.Methods,
				Headers: m.Headers, Query: m.Query, Priority: r.Config.Priority})
			lr.routes = append(lr.routes, r)
			index = append(index, b.routeIndex(i))
		}
		table, err := router.Compile(specs)
		if err != nil {
			var rerrs router.Errors
			if errors.As(err, &rerrs) {
				for _, re := range rerrs {
					field := re.Field
					if field == "" {
						field = "match"
					}
					b.fail(fmt.Sprintf("routes[%d].%s", index[re.Index], field), "%s", routeErrorMsg(re, lr.routes))
				}
			} else {
				b.fail("routes", "listener %s: %v", ln, err)
			}
			continue
		}
		lr.table = table
		b.snap.listeners[ln] = lr
	}
}

// routeIndex maps a compiled route back to its position in the config (routes that failed to build
// are skipped in b.snap.routes).
func (b *builder) routeIndex(i int) int {
	name := b.snap.routes[i].Name
	for j, rc := range b.cfg.Routes {
		if rc.Name == name {
			return j
		}
	}
	return i
}

func routeErrorMsg(re *router.RouteError, routes []*Route) string {
	if re.Other >= 0 && re.Other < len(routes) {
		return fmt.Sprintf("route %q conflicts with route %q: %s", routes[re.Index].Name, routes[re.Other].Name, re.Msg)
	}
	return re.Msg
}
