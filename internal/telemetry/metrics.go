// Package telemetry records what the gateway does: Prometheus metrics whose series are resolved
// once per route, target, method and status (no label lookups per request) and deleted when routes
// or targets go, the JSON access log written by a bounded asynchronous writer that drops rather
// than blocks, and the process logger.
package telemetry

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// methods are the method label values; anything else is OTHER, so a client inventing methods
// cannot create series.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER"}

const numMethods = len(methods)

// methodIndex maps a request method to its label index without allocating.
func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "PATCH":
		return 4
	case "DELETE":
		return 5
	case "OPTIONS":
		return 6
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return numMethods - 1
}

// Status codes are kept in blocks of 100 per class (1xx..5xx), allocated on first use, so a route
// that only ever answers GET 200 costs one 800-byte block rather than every possible code. Codes
// outside 100..599 (a handler bug) share one series labelled "other" in the sixth block.
const (
	numClasses  = 6
	otherClass  = 5
	blockLength = 100
)

type codeBlock [blockLength]atomic.Pointer[counterRef]

// counterRef and observerRef box the interfaces so they fit in an atomic.Pointer.
type counterRef struct{ prometheus.Counter }
type observerRef struct{ prometheus.Observer }

func statusSlot(status int) (class, slot int) {
	if status < 100 || status > 599 {
		return otherClass, 0
	}
	return status/100 - 1, status % 100
}

func codeLabel(class, slot int) string {
	if class == otherClass {
		return "other"
	}
	return strconv.Itoa((class+1)*100 + slot)
}

// Upstream error kinds; anything else is counted as "other" to keep the label bounded.
var errorKinds = [...]string{"connect", "timeout", "reset", "bad_response", "status_5xx", "other"}

func kindIndex(k string) int {
	for i, x := range errorKinds {
		if x == k {
			return i
		}
	}
	return len(errorKinds) - 1
}

// droppedLines counts access log lines dropped because the writer fell behind or failed. It is
// process-wide because access logs are created by the runtime's pool, independent of a Metrics.
var droppedLines atomic.Uint64

// Metrics is the gateway's metric registry. Its own registry, not the global one, so tests and
// embedders get exactly Limen's series.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	attempts *prometheus.CounterVec
	errors   *prometheus.CounterVec
	denials  *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	lastOK   prometheus.Gauge
	info     *prometheus.GaugeVec

	// mu serializes creating and deleting series, so a request finishing on an old snapshot
	// cannot recreate the series of a route that RetainRoutes just deleted.
	mu        sync.Mutex
	routes    sync.Map // name -> *RouteMetrics; read lock-free by Denied
	unmatched *RouteMetrics
	targets   map[targetKey]*TargetMetrics
	source    func(yield func(TargetState))
}

type targetKey struct{ upstream, target string }

// Buckets for request durations: a gateway answers cached or refused requests in well under a
// millisecond and proxies slow upstreams for up to the usual 30 s timeout.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics creates a registry with Limen's metrics and the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_http_requests_total",
			Help: "Requests served, by route (empty when none matched), method (OTHER for unknown ones) and status code."},
			[]string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "limen_http_request_duration_seconds",
			Help: "Time from the start of a request to the end of its handler, by route.", Buckets: durationBuckets},
			[]string{"route"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_upstream_attempts_total",
			Help: "Attempts sent to upstream targets, retries included."}, []string{"upstream", "target"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_upstream_errors_total",
			Help: "Failed upstream attempts by kind: connect, timeout, reset, bad_response, status_5xx, other."},
			[]string{"upstream", "target", "kind"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_policy_denials_total",
			Help: "Requests refused by a policy, by route, policy instance and problem code."}, []string{"route", "policy", "code"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_config_reloads_total",
			Help: "Config reload attempts by result (success or failure)."}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "limen_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config reload."}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "limen_config_info",
			Help: "The running config's hash as a label; the value is always 1."}, []string{"hash"}),
		targets: map[targetKey]*TargetMetrics{},
	}
	m.unmatched = &RouteMetrics{m: m, route: ""}
	m.reg.MustRegister(m.requests, m.duration, m.attempts, m.errors, m.denials, m.reloads, m.lastOK, m.info,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "limen_access_log_dropped_total",
			Help: "Access log lines dropped because the writer fell behind or failed."},
			func() float64 { return float64(droppedLines.Load()) }),
		&liveCollector{m: m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Both results exist from the start so rate() and alerts see a zero rather than no series.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m
}

// Handler serves the registry in the Prometheus exposition format. One failing collector does
// not blind the whole scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry exposes the registry for tests and exporters.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RouteMetrics is one route's handle. Series are resolved on first use of each method and status
// and cached in atomic pointers: later observations do no label lookup and allocate nothing. A
// handle invalidated by RetainRoutes records nothing more.
type RouteMetrics struct {
	m        *Metrics
	route    string
	dead     atomic.Bool
	duration atomic.Pointer[observerRef]
	codes    [numMethods][numClasses]atomic.Pointer[codeBlock]
	denials  sync.Map // denialKey -> *counterRef
}

type denialKey struct{ policy, code string }

// Route returns the handle for a route's series ("" is requests no route matched); the same name
// returns the same handle until RetainRoutes drops it. It creates no series: a route that never
// serves (a dry run, a rejected reload) exports nothing.
func (m *Metrics) Route(name string) *RouteMetrics {
	if name == "" {
		return m.unmatched
	}
	if r, ok := m.routes.Load(name); ok {
		return r.(*RouteMetrics)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.routes.Load(name); ok {
		return r.(*RouteMetrics)
	}
	r := &RouteMetrics{m: m, route: name}
	m.routes.Store(name, r)
	return r
}

// Observe counts a finished request and its duration. After the first request with a given
// method and status it takes no lock, does no label lookup and allocates nothing.
func (r *RouteMetrics) Observe(method string, status int, d time.Duration) {
	if r == nil || r.dead.Load() {
		return
	}
	mi := methodIndex(method)
	class, slot := statusSlot(status)
	if b := r.codes[mi][class].Load(); b != nil {
		if c := b[slot].Load(); c != nil {
			c.Inc()
			// The duration observer is stored before any counter, so it is set here.
			r.duration.Load().Observe(d.Seconds())
			return
		}
	}
	r.observeSlow(mi, class, slot, d)
}

func (r *RouteMetrics) observeSlow(mi, class, slot int, d time.Duration) {
	m := r.m
	m.mu.Lock()
	if r.dead.Load() {
		m.mu.Unlock()
		return
	}
	h := r.duration.Load()
	if h == nil {
		h = &observerRef{m.duration.WithLabelValues(r.route)}
		r.duration.Store(h)
	}
	b := r.codes[mi][class].Load()
	if b == nil {
		b = new(codeBlock)
		r.codes[mi][class].Store(b)
	}
	c := b[slot].Load()
	if c == nil {
		c = &counterRef{m.requests.WithLabelValues(r.route, methods[mi], codeLabel(class, slot))}
		b[slot].Store(c)
	}
	m.mu.Unlock()
	c.Inc()
	h.Observe(d.Seconds())
}

// Denied counts a request the policy instance policyID refused with code. The first denial of
// each (policy, code) pair resolves its series; later ones look it up in the handle's own map.
func (r *RouteMetrics) Denied(policyID, code string) {
	if r == nil || r.dead.Load() {
		return
	}
	k := denialKey{policyID, code}
	if c, ok := r.denials.Load(k); ok {
		c.(*counterRef).Inc()
		return
	}
	m := r.m
	m.mu.Lock()
	if r.dead.Load() {
		m.mu.Unlock()
		return
	}
	c, ok := r.denials.Load(k)
	if !ok {
		c = &counterRef{m.denials.WithLabelValues(r.route, policyID, code)}
		r.denials.Store(k, c)
	}
	m.mu.Unlock()
	c.(*counterRef).Inc()
}

// Denied counts a request refused by a policy on a route. A route RetainRoutes already removed is
// not counted, so a request finishing on an old snapshot cannot bring its series back.
func (m *Metrics) Denied(route, policyID, code string) {
	if route == "" {
		m.unmatched.Denied(policyID, code)
		return
	}
	if r, ok := m.routes.Load(route); ok {
		r.(*RouteMetrics).Denied(policyID, code)
	}
}

// RetainRoutes deletes every series of the routes not in names and invalidates their handles
// (the unmatched route "" is always kept). Call it after a new snapshot is live.
func (m *Metrics) RetainRoutes(names []string) {
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.routes.Range(func(k, v any) bool {
		name := k.(string)
		if keep[name] {
			return true
		}
		m.routes.Delete(name)
		v.(*RouteMetrics).retire()
		return true
	})
}

// retire invalidates the handle and deletes exactly the series it resolved (an exact delete per
// series, not a scan of every series per removed route, which would be quadratic when a reload
// drops thousands of routes). The caller holds m.mu.
func (r *RouteMetrics) retire() {
	m := r.m
	r.dead.Store(true)
	if r.duration.Load() != nil {
		m.duration.DeleteLabelValues(r.route)
	}
	for mi := range r.codes {
		for class := range r.codes[mi] {
			b := r.codes[mi][class].Load()
			if b == nil {
				continue
			}
			for slot := range b {
				if b[slot].Load() != nil {
					m.requests.DeleteLabelValues(r.route, methods[mi], codeLabel(class, slot))
				}
			}
		}
	}
	r.denials.Range(func(k, _ any) bool {
		d := k.(denialKey)
		m.denials.DeleteLabelValues(r.route, d.policy, d.code)
		return true
	})
}

// TargetMetrics is one upstream target's handle: attempts and errors resolved once, health and
// in-flight read at scrape time.
type TargetMetrics struct {
	m                *Metrics
	upstream, target string
	dead             atomic.Bool
	attempts         atomic.Pointer[counterRef]
	errs             [len(errorKinds)]atomic.Pointer[counterRef]
	health           atomic.Int32 // 0 unknown, 1 unhealthy, 2 healthy
	healthFn         atomic.Pointer[func() bool]
	inFlightFn       atomic.Pointer[func() int64]
}

// Target returns the handle for an upstream target's series; the same pair returns the same
// handle until RetainTargets drops it. Target is for build time: it takes a lock.
func (m *Metrics) Target(upstream, target string) *TargetMetrics {
	k := targetKey{upstream, target}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.targets[k]; t != nil {
		return t
	}
	t := &TargetMetrics{m: m, upstream: upstream, target: target}
	m.targets[k] = t
	return t
}

// Attempt counts an attempt sent to the target.
func (t *TargetMetrics) Attempt() {
	if t == nil || t.dead.Load() {
		return
	}
	if c := t.attempts.Load(); c != nil {
		c.Inc()
		return
	}
	t.resolve(&t.attempts, func() prometheus.Counter { return t.m.attempts.WithLabelValues(t.upstream, t.target) })
}

// Error counts a failed attempt of a kind: connect, timeout, reset, bad_response or status_5xx
// (anything else is counted as other).
func (t *TargetMetrics) Error(kind string) {
	if t == nil || t.dead.Load() {
		return
	}
	i := kindIndex(kind)
	if c := t.errs[i].Load(); c != nil {
		c.Inc()
		return
	}
	t.resolve(&t.errs[i], func() prometheus.Counter { return t.m.errors.WithLabelValues(t.upstream, t.target, errorKinds[i]) })
}

func (t *TargetMetrics) resolve(p *atomic.Pointer[counterRef], create func() prometheus.Counter) {
	t.m.mu.Lock()
	if t.dead.Load() {
		t.m.mu.Unlock()
		return
	}
	c := p.Load()
	if c == nil {
		c = &counterRef{create()}
		p.Store(c)
	}
	t.m.mu.Unlock()
	c.Inc()
}

// SetHealthy records the target's health, for callers that push state changes.
func (t *TargetMetrics) SetHealthy(ok bool) {
	if ok {
		t.health.Store(2)
	} else {
		t.health.Store(1)
	}
}

// SetHealthFunc makes scrapes read the target's health from f, for callers that own the state.
func (t *TargetMetrics) SetHealthFunc(f func() bool) { t.healthFn.Store(&f) }

// SetInFlightFunc makes scrapes read the target's in-flight requests from f, so requests never
// update a gauge.
func (t *TargetMetrics) SetInFlightFunc(f func() int64) { t.inFlightFn.Store(&f) }

// TargetState is one target's live state as a TargetSource reports it.
type TargetState struct {
	Upstream, Target string
	Healthy          bool
	InFlight         int64
}

// SetTargetSource makes scrapes read limen_upstream_target_healthy and limen_upstream_in_flight
// for every target f yields (typically the running snapshot's upstream pools). A target f yields
// takes precedence over the same target's handle. nil removes the source.
func (m *Metrics) SetTargetSource(f func(yield func(TargetState))) {
	m.mu.Lock()
	m.source = f
	m.mu.Unlock()
}

// RetainTargets deletes the limen_upstream_* series of the upstream/target pairs not listed and
// invalidates their handles, so removed targets stop being exported.
func (m *Metrics) RetainTargets(targets map[string][]string) {
	keep := map[targetKey]bool{}
	for u, ts := range targets {
		for _, t := range ts {
			keep[targetKey{u, t}] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, t := range m.targets {
		if keep[k] {
			continue
		}
		t.dead.Store(true)
		delete(m.targets, k)
		if t.attempts.Load() != nil {
			m.attempts.DeleteLabelValues(k.upstream, k.target)
		}
		for i := range t.errs {
			if t.errs[i].Load() != nil {
				m.errors.DeleteLabelValues(k.upstream, k.target, errorKinds[i])
			}
		}
	}
}

// Reload records a reload attempt; on success hash is the new config's hash.
func (m *Metrics) Reload(ok bool, hash string) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.lastOK.Set(float64(time.Now().UnixNano()) / 1e9)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.info.Reset()
	m.info.WithLabelValues(hash).Set(1)
}

// liveCollector exports target health and in-flight requests from values read at scrape time,
// so they cost nothing per request and vanish with their targets.
type liveCollector struct{ m *Metrics }

var (
	healthyDesc = prometheus.NewDesc("limen_upstream_target_healthy",
		"1 when the target is healthy and not ejected, 0 otherwise.", []string{"upstream", "target"}, nil)
	inFlightDesc = prometheus.NewDesc("limen_upstream_in_flight",
		"Requests currently in flight to the target.", []string{"upstream", "target"}, nil)
)

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- healthyDesc
	ch <- inFlightDesc
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	m.mu.Lock()
	source := m.source
	handles := make([]*TargetMetrics, 0, len(m.targets))
	for _, t := range m.targets {
		handles = append(handles, t)
	}
	m.mu.Unlock()
	// Callbacks run outside the lock: they belong to other packages and may take their own.
	seen := map[targetKey]bool{}
	if source != nil {
		source(func(s TargetState) {
			k := targetKey{s.Upstream, s.Target}
			if seen[k] {
				return
			}
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, b2f(s.Healthy), s.Upstream, s.Target)
			ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(s.InFlight), s.Upstream, s.Target)
		})
	}
	for _, t := range handles {
		if t.dead.Load() || seen[targetKey{t.upstream, t.target}] {
			continue
		}
		if f := t.healthFn.Load(); f != nil {
			ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, b2f((*f)()), t.upstream, t.target)
		} else if h := t.health.Load(); h != 0 {
			ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, b2f(h == 2), t.upstream, t.target)
		}
		if f := t.inFlightFn.Load(); f != nil {
			ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64((*f)()), t.upstream, t.target)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
