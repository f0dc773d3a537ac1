// Package telemetry records what the gateway does: Prometheus metrics with series resolved when
// a snapshot is built (no label lookups per request) and deleted when routes or targets go, and
// the JSON access log written by a bounded asynchronous writer that drops rather than blocks.
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

// methods are the method label values; anything else is OTHER (bounded cardinality).
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER"}

func methodIndex(m string) int {
	for i, x := range methods[:len(methods)-1] {
		if x == m {
			return i
		}
	}
	return len(methods) - 1
}

// droppedLines counts access log lines dropped because the writer fell behind, process-wide.
var droppedLines atomic.Uint64

// Metrics is the gateway's metric registry.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	attempts *prometheus.CounterVec
	errors   *prometheus.CounterVec
	healthy  *prometheus.GaugeVec
	denials  *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	lastOK   prometheus.Gauge
	info     *prometheus.GaugeVec

	// mu guards the handle caches; they are used at snapshot build time only.
	mu      sync.Mutex
	routes  map[string]*RouteMetrics
	targets map[[2]string]*TargetMetrics
}

// NewMetrics registers Limen's metrics in a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_http_requests_total",
			Help: "Requests served, by route (empty when none matched), method and status code."}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "limen_http_request_duration_seconds",
			Help:    "Time from request start to the end of the handler, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"route"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_upstream_attempts_total",
			Help: "Attempts sent to upstream targets, retries included."}, []string{"upstream", "target"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_upstream_errors_total",
			Help: "Failed upstream attempts by kind."}, []string{"upstream", "target", "kind"}),
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "limen_upstream_target_healthy",
			Help: "1 when the target is healthy and not ejected."}, []string{"upstream", "target"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_policy_denials_total",
			Help: "Requests refused, by route, policy instance and problem code."}, []string{"route", "policy", "code"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "limen_config_reloads_total",
			Help: "Config reload attempts by result."}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "limen_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config reload."}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "limen_config_info",
			Help: "The running config's hash (value 1)."}, []string{"hash"}),
		routes:  map[string]*RouteMetrics{},
		targets: map[[2]string]*TargetMetrics{},
	}
	m.reg.MustRegister(m.requests, m.duration, m.attempts, m.errors, m.healthy, m.denials, m.reloads, m.lastOK, m.info,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "limen_access_log_dropped_total",
			Help: "Access log lines dropped because the writer fell behind."}, func() float64 { return float64(droppedLines.Load()) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the registry (tests, and later exporters).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RouteMetrics are one route's pre-resolved series.
type RouteMetrics struct {
	m        *Metrics
	route    string
	duration prometheus.Observer
	counters [len(methods)][600]atomic.Pointer[prometheus.Counter]
}

// Route returns the handle for a route's series, resolving them once ("" is unmatched requests).
func (m *Metrics) Route(name string) *RouteMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.routes[name]; r != nil {
		return r
	}
	r := &RouteMetrics{m: m, route: name, duration: m.duration.WithLabelValues(name)}
	m.routes[name] = r
	return r
}

// Observe counts a finished request. After the first request with a given method and status it
// performs no label lookup and allocates nothing.
func (r *RouteMetrics) Observe(method string, status int, d time.Duration) {
	if status < 100 || status > 599 {
		status = 599
	}
	mi := methodIndex(method)
	slot := &r.counters[mi][status]
	c := slot.Load()
	if c == nil {
		cc := r.m.requests.WithLabelValues(r.route, methods[mi], strconv.Itoa(status))
		slot.Store(&cc)
		c = &cc
	}
	(*c).Inc()
	r.duration.Observe(d.Seconds())
}

// RetainRoutes deletes every series of routes not in names.
func (m *Metrics) RetainRoutes(names []string) {
	keep := map[string]bool{"": true}
	for _, n := range names {
		keep[n] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.routes {
		if keep[name] {
			continue
		}
		delete(m.routes, name)
		m.requests.DeletePartialMatch(prometheus.Labels{"route": name})
		m.duration.DeletePartialMatch(prometheus.Labels{"route": name})
		m.denials.DeletePartialMatch(prometheus.Labels{"route": name})
	}
}

// TargetMetrics are one upstream target's series, resolved once.
type TargetMetrics struct {
	upstream, target string
	attempts         prometheus.Counter
	errorsVec        *prometheus.CounterVec
	errors           sync.Map // kind -> prometheus.Counter; kinds are a small fixed set
	healthy          prometheus.Gauge
}

// Target returns the handle for a target's series; the same pair gets the same handle.
func (m *Metrics) Target(upstream, target string) *TargetMetrics {
	k := [2]string{upstream, target}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.targets[k]; t != nil {
		return t
	}
	t := &TargetMetrics{upstream: upstream, target: target, errorsVec: m.errors,
		attempts: m.attempts.WithLabelValues(upstream, target), healthy: m.healthy.WithLabelValues(upstream, target)}
	m.targets[k] = t
	return t
}

// Attempt counts an attempt.
func (t *TargetMetrics) Attempt() { t.attempts.Inc() }

// Error counts a failed attempt of a kind (connect, timeout, reset, bad_response, status_5xx).
func (t *TargetMetrics) Error(kind string) {
	if c, ok := t.errors.Load(kind); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c, _ := t.errors.LoadOrStore(kind, t.errorsVec.WithLabelValues(t.upstream, t.target, kind))
	c.(prometheus.Counter).Inc()
}

// SetHealthy records the target's health.
func (t *TargetMetrics) SetHealthy(ok bool) {
	if ok {
		t.healthy.Set(1)
	} else {
		t.healthy.Set(0)
	}
}

// RetainTargets deletes the limen_upstream_* series of upstream/target pairs not listed, and
// forgets their handles, so removed targets stop being exported.
func (m *Metrics) RetainTargets(targets map[string][]string) {
	keep := map[[2]string]bool{}
	for u, ts := range targets {
		for _, t := range ts {
			keep[[2]string{u, t}] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.targets {
		if keep[k] {
			continue
		}
		delete(m.targets, k)
		l := prometheus.Labels{"upstream": k[0], "target": k[1]}
		m.attempts.DeletePartialMatch(l)
		m.errors.DeletePartialMatch(l)
		m.healthy.DeletePartialMatch(l)
	}
}

// Denied counts a request refused by a policy.
func (m *Metrics) Denied(route, policyID, code string) {
	m.denials.WithLabelValues(route, policyID, code).Inc()
}

// Reload records a reload attempt; on success hash is the new config's hash.
func (m *Metrics) Reload(ok bool, hash string) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.lastOK.Set(float64(time.Now().Unix()))
	m.info.Reset()
	m.info.WithLabelValues(hash).Set(1)
}
