package runtime

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/limen-gateway/limen/internal/audit"
	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/internal/refpool"
	"github.com/limen-gateway/limen/internal/server"
	"github.com/limen-gateway/limen/internal/state"
	"github.com/limen-gateway/limen/internal/telemetry"
)

// Binder applies a set of listeners; *server.Server implements it.
type Binder interface {
	Apply(specs []server.ListenerSpec) error
}

// Options wire a Runtime.
type Options struct {
	// Path is the config file or directory.
	Path    string
	Logger  *slog.Logger
	Level   *slog.LevelVar
	Metrics *telemetry.Metrics
	// Server binds the listeners of each applied snapshot; nil in tests that only dispatch.
	Server Binder
	// AdminHandler builds the admin API handler for a config; nil disables admin listeners.
	AdminHandler func(cfg *config.Config) (admin, ops HandlerSpec, err error)
}

// HandlerSpec is a raw (no hygiene) listener the runtime binds beside the proxy listeners.
type HandlerSpec = server.ListenerSpec

// Runtime owns the current snapshot and the reload transaction.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	pool    *refpool.Pool
	current atomic.Pointer[Snapshot]
	ready   atomic.Bool

	mu      sync.Mutex // serializes reloads
	status  Status
	onApply []func(*config.Document)
	trim    *time.Timer
}

// trimDelay is how long reloads must pause before memory the old snapshots used is returned.
const trimDelay = 2 * time.Second

// scheduleTrim returns the memory of retired snapshots to the OS once reloads pause. Without it
// the runtime keeps freed spans and their GC metadata for minutes, and a burst of reloads (a
// deploy pipeline pushing configs) leaves RSS well above where it started. One forced GC per
// burst is cheap next to a reload. Called with rt.mu held.
func (rt *Runtime) scheduleTrim() {
	if rt.trim == nil {
		rt.trim = time.AfterFunc(trimDelay, debug.FreeOSMemory)
		return
	}
	rt.trim.Reset(trimDelay)
}

// SetBinder sets what binds listeners; cmd/limen wires the server in after both exist.
func (rt *Runtime) SetBinder(b Binder) { rt.opts.Server = b }

// SetAdmin sets the builder of the admin and ops listeners.
func (rt *Runtime) SetAdmin(f func(cfg *config.Config) (admin, ops HandlerSpec, err error)) {
	rt.opts.AdminHandler = f
}

// OnApply registers a function called with every document that was applied (the file watcher
// uses it to follow the files a config references).
func (rt *Runtime) OnApply(f func(*config.Document)) { rt.onApply = append(rt.onApply, f) }

// Status is the outcome of the last reload, served by GET /admin/status.
type Status struct {
	Hash         string     `json:"config_hash"`
	Path         string     `json:"config_path"`
	Started      time.Time  `json:"started"`
	LastReload   *Reload    `json:"last_reload,omitempty"`
	Reloads      int        `json:"reloads"`
	Failures     int        `json:"reload_failures"`
	Ready        bool       `json:"ready"`
	LastSuccess  *time.Time `json:"last_success,omitempty"`
	ActiveRoutes int        `json:"routes"`
}

// Reload describes one reload attempt.
type Reload struct {
	At     time.Time `json:"at"`
	Source string    `json:"source"`
	OK     bool      `json:"ok"`
	NoOp   bool      `json:"no_op,omitempty"`
	Hash   string    `json:"hash,omitempty"`
	Errors []string  `json:"errors,omitempty"`
}

// New returns a runtime with no snapshot; call Load to serve.
func New(o Options) *Runtime {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	rt := &Runtime{opts: o, log: o.Logger, pool: &refpool.Pool{}}
	rt.status.Path = o.Path
	rt.status.Started = time.Now()
	if o.Metrics != nil {
		rt.registerStateMetrics(o.Metrics)
	}
	return rt
}

// registerStateMetrics exposes the shared-state engines' health, read from the running
// snapshot at scrape time.
func (rt *Runtime) registerStateMetrics(m *telemetry.Metrics) {
	m.Registry().MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "limen_state_errors_total",
			Help: "Failed commands to the shared-state store (Redis)."}, func() float64 {
			if s := rt.current.Load(); s != nil {
				if r, ok := s.engines["redis"].(*state.Redis); ok {
					return float64(r.Errors())
				}
			}
			return 0
		}),
		breakerCollector{rt},
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "limen_usage_dropped_requests_total",
			Help: "Metered requests lost because the usage store failed for longer than the pending bound."}, func() float64 {
			if s := rt.current.Load(); s != nil && s.usage != nil {
				return float64(s.usage.Dropped())
			}
			return 0
		}),
	)
}

// Pool exposes the reload-surviving object pool (tests check it for leaks).
func (rt *Runtime) Pool() *refpool.Pool { return rt.pool }

// Current returns the serving snapshot, or nil before the first load.
func (rt *Runtime) Current() *Snapshot { return rt.current.Load() }

// Load reads the config from its path and applies it. source names what triggered it ("start",
// "file", "sighup", "admin").
func (rt *Runtime) Load(source string) error {
	doc, err := config.Load(rt.opts.Path)
	if err != nil {
		rt.recordFailure(source, err)
		return err
	}
	return rt.applyDoc(doc, source)
}

// ApplyDocument applies an already parsed document (admin push after it was written to disk).
func (rt *Runtime) applyDoc(doc *config.Document, source string) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	old := rt.current.Load()
	if old != nil && old.Hash == doc.Hash {
		rt.status.LastReload = &Reload{At: time.Now(), Source: source, OK: true, NoOp: true, Hash: doc.Hash}
		e := reloadEvent(source)
		e.Result, e.OldHash, e.NewHash = "noop", old.Hash, doc.Hash
		old.audit.Record(e)
		return nil
	}
	snap, err := compile(doc, rt.pool, rt.opts.Metrics, rt.log, false)
	if err != nil {
		rt.recordFailureLocked(source, err)
		return err
	}
	if rt.opts.Server != nil {
		specs, err := rt.listenerSpecs(doc.Config)
		if err == nil {
			err = rt.opts.Server.Apply(specs)
		}
		if err != nil {
			snap.close()
			rt.recordFailureLocked(source, err)
			return err
		}
	}
	if rt.opts.Level != nil {
		rt.opts.Level.Set(parseLevel(doc.Config.Logging.Level))
	}
	rt.current.Store(snap)
	if old != nil {
		old.retire(doc.Config.Server.DrainTimeout.D())
		rt.scheduleTrim()
	}
	rt.retainMetrics(snap)
	now := time.Now()
	rt.status.Hash = doc.Hash
	rt.status.Reloads++
	rt.status.LastReload = &Reload{At: now, Source: source, OK: true, Hash: doc.Hash}
	rt.status.LastSuccess = &now
	rt.status.ActiveRoutes = len(snap.routes)
	if rt.opts.Metrics != nil {
		rt.opts.Metrics.Reload(true, doc.Hash)
	}
	rt.ready.Store(true)
	for _, f := range rt.onApply {
		f(doc)
	}
	rt.log.Info("config applied", "source", source, "hash", short(doc.Hash), "routes", len(snap.routes))
	e := reloadEvent(source)
	e.Result, e.NewHash = "ok", doc.Hash
	var prev *config.Config
	if old != nil {
		e.OldHash, prev = old.Hash, old.Doc.Config
	}
	e.Changed = config.Diff(prev, doc.Config)
	snap.audit.Record(e)
	return nil
}

func (rt *Runtime) recordFailure(source string, err error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.recordFailureLocked(source, err)
}

func (rt *Runtime) recordFailureLocked(source string, err error) {
	rt.status.Failures++
	rt.status.LastReload = &Reload{At: time.Now(), Source: source, OK: false, Errors: errorLines(err)}
	if rt.opts.Metrics != nil {
		rt.opts.Metrics.Reload(false, "")
	}
	rt.log.Error("config rejected; the previous config keeps serving", "source", source, "errors", errorLines(err))
	cur := rt.current.Load()
	e := reloadEvent(source)
	e.Result, e.Errors = "rejected", errorLines(err)
	if cur != nil {
		e.OldHash = cur.Hash
		cur.audit.Record(e)
	}
}

// Audit records an event in the running config's audit trail (a no-op without one).
// Authentication failures and denials go through the trail's rate limit and never block.
func (rt *Runtime) Audit(e audit.Event) {
	cur := rt.current.Load()
	if cur == nil {
		return
	}
	switch e.Event {
	case audit.AuthnFailure, audit.AuthzDenied:
		cur.audit.Request(e)
	default:
		cur.audit.Record(e)
	}
}

// reloadEvent starts the audit event of a reload: an admin event for a push through the admin
// API (source "admin:<token>@<remote>"), a reload event otherwise.
func reloadEvent(source string) audit.Event {
	if who, ok := strings.CutPrefix(source, "admin:"); ok {
		actor, remote, _ := strings.Cut(who, "@")
		return audit.Event{Event: audit.Admin, Action: "PUT /admin/config", Actor: actor, Remote: remote, Source: "admin"}
	}
	return audit.Event{Event: audit.Reload, Source: source}
}

func errorLines(err error) []string {
	var ce config.Errors
	if errors.As(err, &ce) {
		out := make([]string, len(ce))
		for i, e := range ce {
			out[i] = e.Error()
		}
		return out
	}
	return []string{err.Error()}
}

func (rt *Runtime) retainMetrics(s *Snapshot) {
	m := rt.opts.Metrics
	if m == nil {
		return
	}
	names := make([]string, 0, len(s.routes))
	for _, r := range s.routes {
		names = append(names, r.Name)
	}
	m.RetainRoutes(names)
	targets := map[string][]string{}
	for name, u := range s.upstreams {
		for _, t := range u.Status().Targets {
			targets[name] = append(targets[name], t.URL)
		}
	}
	m.RetainTargets(targets)
}

// Shutdown marks the runtime not ready (so /readyz fails first) and releases the snapshot.
func (rt *Runtime) SetNotReady() { rt.ready.Store(false) }

// Close releases the current snapshot and everything in the pool it holds.
func (rt *Runtime) Close() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if s := rt.current.Swap(nil); s != nil {
		s.retire(0)
		s.close()
	}
	// Snapshots retired by reloads may still hold an access log (a stream outlived the drain);
	// their waiting lines are written now rather than lost at exit.
	telemetry.FlushAccessLogs()
	if rt.trim != nil {
		rt.trim.Stop()
	}
}

// Check validates a document fully (config rules, then a dry-run build: routing conflicts,
// policy configs, rewrites) without binding or starting anything.
func Check(doc *config.Document) error {
	s, err := compile(doc, &refpool.Pool{}, nil, slog.New(slog.DiscardHandler), true)
	if err != nil {
		return err
	}
	s.close()
	return nil
}

// listenerSpecs turns the config's listeners (and the admin/ops listeners) into server specs.
func (rt *Runtime) listenerSpecs(cfg *config.Config) ([]server.ListenerSpec, error) {
	var specs []server.ListenerSpec
	allowConnect := false
	for _, r := range cfg.Routes {
		for _, m := range r.Match.Methods {
			if m == "CONNECT" {
				allowConnect = true
			}
		}
	}
	for _, l := range cfg.Listeners {
		spec := server.ListenerSpec{
			Name: l.Name, Addr: l.Addr,
			ReadHeaderTimeout: l.Timeouts.ReadHeader.D(), IdleTimeout: l.Timeouts.Idle.D(),
			MaxHeaderBytes: int(l.MaxHeaderBytes),
		}
		for _, p := range l.Protocols {
			switch p {
			case "http1":
				spec.HTTP1 = true
			case "h2":
				spec.H2 = true
			case "h2c":
				spec.H2C = true
			}
		}
		if l.TLS != nil {
			t := &server.TLSSpec{MinVersion: tls.VersionTLS12}
			if l.TLS.MinVersion == "1.3" {
				t.MinVersion = tls.VersionTLS13
			}
			var err error
			if t.ClientCAs, t.ClientAuth, err = clientAuth(l.TLS.ClientAuth); err != nil {
				return nil, fmt.Errorf("listener %s: client_auth: %w", l.Name, err)
			}
			for _, c := range l.TLS.Certificates {
				cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
				if err != nil {
					return nil, fmt.Errorf("listener %s: %w", l.Name, err)
				}
				t.Certificates = append(t.Certificates, cert)
				if c.ClientAuth == nil {
					continue
				}
				sa := server.SNIClientAuth{Names: certNames(cert)}
				if sa.ClientCAs, sa.ClientAuth, err = clientAuth(c.ClientAuth); err != nil {
					return nil, fmt.Errorf("listener %s: certificate %s: client_auth: %w", l.Name, c.Cert, err)
				}
				if len(sa.Names) == 0 {
					return nil, fmt.Errorf("listener %s: certificate %s has no DNS names to apply its client_auth to", l.Name, c.Cert)
				}
				t.PerSNI = append(t.PerSNI, sa)
			}
			spec.TLS = t
		}
		src, err := httpx.ParseIPSource(l.ClientIP.Source)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		trusted, err := httpx.ParseTrusted(l.ClientIP.TrustedProxies)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		spec.Hygiene = server.Hygiene{
			ClientIP: src, Trusted: trusted, StripHeaders: stripHeaders(cfg),
			Paths: httpx.PathOptions{
				MergeSlashes:       cfg.Server.MergeSlashes == nil || *cfg.Server.MergeSlashes,
				KeepEscapedSlashes: cfg.Server.EscapedSlashes == "keep",
			},
			AllowConnect: allowConnect,
		}
		specs = append(specs, spec)
	}
	if rt.opts.AdminHandler != nil && (cfg.Admin != nil || cfg.Ops != nil) {
		admin, ops, err := rt.opts.AdminHandler(cfg)
		if err != nil {
			return nil, err
		}
		if admin.Handler != nil {
			specs = append(specs, admin)
		}
		if ops.Handler != nil {
			specs = append(specs, ops)
		}
	}
	return specs, nil
}

// IdentityHeaders are set only by the gateway (authentication policies, in the proxy's Rewrite),
// so a client's copies are removed from every request, on every route, with or without auth.
var IdentityHeaders = []string{
	"X-Consumer-Id", "X-Consumer-Groups", "X-Consumer-Username", "X-Consumer-Plan",
	"X-Authenticated-Userid", "X-Authenticated-Scope", "X-Credential-Identifier", "X-Anonymous-Consumer",
}

// clientAuth loads a client_auth setting; nil means no client certificates.
func clientAuth(ca *config.ClientAuth) (*x509.CertPool, tls.ClientAuthType, error) {
	if ca == nil || ca.Mode == "none" {
		return nil, tls.NoClientCert, nil
	}
	pemBytes, err := os.ReadFile(ca.CA)
	if err != nil {
		return nil, 0, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, 0, fmt.Errorf("%s holds no PEM certificate", ca.CA)
	}
	if ca.Mode == "optional" {
		return pool, tls.VerifyClientCertIfGiven, nil
	}
	return pool, tls.RequireAndVerifyClientCert, nil
}

// certNames are the DNS names a certificate serves, for per-SNI settings.
func certNames(c tls.Certificate) []string {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return nil
	}
	return leaf.DNSNames
}

// stripHeaders are the identity headers removed from every request: the built-in set, the
// configured identity header names and server.strip_headers.
func stripHeaders(cfg *config.Config) []string {
	ih := cfg.Server.IdentityHeaders
	out := append([]string{}, IdentityHeaders...)
	out = append(out, ih.ConsumerID, ih.ConsumerGroups, ih.ConsumerPlan, ih.Credential, ih.Anonymous)
	return append(out, cfg.Server.StripHeaders...)
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// writeFileAtomic replaces path with data via a temporary file and rename, so a file watcher
// never sees a half-written config.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".limen-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		_ = os.Chmod(tmp, fi.Mode())
	}
	return os.Rename(tmp, path)
}

// breakerCollector reports every upstream circuit breaker of the running config at scrape time:
// limen_upstream_circuit_state{upstream} is 0 closed, 1 half-open, 2 open.
type breakerCollector struct{ rt *Runtime }

var breakerDesc = prometheus.NewDesc("limen_upstream_circuit_state",
	"State of the upstream's circuit breaker: 0 closed, 1 half-open, 2 open.", []string{"upstream"}, nil)

func (c breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- breakerDesc }

func (c breakerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rt.current.Load()
	if s == nil {
		return
	}
	for name, b := range s.breakers {
		v := 0.0
		switch b.State() {
		case "half-open":
			v = 1
		case "open":
			v = 2
		}
		ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, v, name)
	}
}
