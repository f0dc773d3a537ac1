// Package upstream holds pools of backend targets: static or DNS-discovered targets with weights,
// balancers (smooth weighted round robin, least request and peak-EWMA latency by power of two
// choices, consistent hashing with bounded loads), active and passive health, the transport to
// reach them, and the retry budget. State that must survive a reload (connections, health,
// ejections, latency estimates) lives in the shared policy.Pool, keyed by what it is.
package upstream

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/policy"
)

// Options configure an upstream; runtime maps the config onto them.
type Options struct {
	Name    string
	Targets []TargetSpec
	DNS     *DNSOptions
	// Balance is round_robin (the default when empty), least_request, ewma or hash.
	Balance string
	// HashOn is what the hash balancer hashes: header:NAME, cookie:NAME, client_ip, consumer or
	// path. Required with hash.
	HashOn string
	// HashBalanceFactor is c in the hash balancer's load bound (c × the average load); at
	// least 1, DefaultHashBalanceFactor when 0.
	HashBalanceFactor float64
	// EWMADecay is the ewma balancer's time constant τ; DefaultEWMADecay when 0.
	EWMADecay time.Duration
	Active    *ActiveCheck
	Passive   *PassiveCheck
	Transport TransportOptions
	Retry     RetryPolicy
}

// TargetSpec is one static target.
type TargetSpec struct {
	URL    *url.URL
	Weight int
}

// DNSOptions configure DNS discovery: either the A/AAAA records of Name, each address a target
// on Port, or the SRV records of SRV.
type DNSOptions struct {
	Name string
	Port int
	// SRV is a name whose SRV records (RFC 2782) give the targets' hosts, ports, priorities and
	// weights; set instead of Name and Port. See resolveSRV.
	SRV      string
	Scheme   string
	Refresh  time.Duration
	Resolver string
}

// query is the name discovery looks up, for errors and logs.
func (d *DNSOptions) query() string { return cmp.Or(d.SRV, d.Name) }

// ActiveCheck probes targets periodically.
type ActiveCheck struct {
	Path                         string
	Interval, Timeout            time.Duration
	HealthyAfter, UnhealthyAfter int
	ExpectStatus                 []int
}

// PassiveCheck ejects targets that fail real traffic.
type PassiveCheck struct {
	ConsecutiveFailures int
	EjectFor            time.Duration
	MaxEjectionPercent  int
}

// TransportOptions configure the connection to targets.
type TransportOptions struct {
	ConnectTimeout, ResponseHeaderTimeout, IdleTimeout time.Duration
	Protocol                                           string
	MaxConnsPerTarget                                  int
	CAFile, CertFile, KeyFile, ServerName              string
}

// RetryPolicy says what is retried.
type RetryPolicy struct {
	Attempts                             int
	OnConnectFailure, OnTimeout, OnReset bool
	OnStatus                             []int
	Budget                               float64
	Backoff                              time.Duration
	MaxBody                              int64
}

// ErrNoHealthyTarget means every target is down, ejected or already tried.
var ErrNoHealthyTarget = errors.New("no healthy target")

// Upstream is one pool of targets.
type Upstream struct {
	name      string
	opts      Options
	log       *slog.Logger
	shared    policy.Pool
	transport *http.Transport

	targets atomic.Pointer[[]*Target]
	ring    atomic.Pointer[ring] // the hash balancer's ring over the same targets
	mu      sync.Mutex           // round robin state and DNS updates
	release []func()

	hash   hashSpec // hash_on, for the hash balancer
	factor float64  // hash_balance_factor
	ewma   bool     // whether End feeds latency estimates
	tau    float64  // ewma_decay in nanoseconds
	// mono is the latency estimates' clock (monotonic nanoseconds); tests replace it.
	mono func(time.Time) int64
	// refreshes counts finished DNS refreshes, successful or not, so tests can wait for one
	// without timing.
	refreshes atomic.Int64

	requests atomic.Int64 // in flight, for the retry budget
	retries  atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
}

// Target is one backend.
type Target struct {
	URL    *url.URL
	Key    string // scheme://host:port
	Weight int
	state  *health
	cw     int // smooth weighted round robin current weight (under Upstream.mu)
	rel    func()
}

// Status is an upstream as the admin API shows it.
type Status struct {
	Name    string         `json:"name"`
	Balance string         `json:"balance"`
	HashOn  string         `json:"hash_on,omitempty"`
	Targets []TargetStatus `json:"targets"`
	// CircuitBreaker is the pool's breaker state, when it has one (filled by the runtime).
	CircuitBreaker map[string]any `json:"circuit_breaker,omitempty"`
}

// TargetStatus is one target's state.
type TargetStatus struct {
	URL                 string     `json:"url"`
	Weight              int        `json:"weight"`
	Healthy             bool       `json:"healthy"`
	EjectedUntil        *time.Time `json:"ejected_until,omitempty"`
	InFlight            int64      `json:"in_flight"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	// LatencyMillis is the ewma balancer's current latency estimate, once there is one.
	LatencyMillis *float64 `json:"latency_ewma_ms,omitempty"`
}

// New builds an upstream, acquiring its transport and targets' health from shared.
func New(o Options, shared policy.Pool, log *slog.Logger) (*Upstream, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &Upstream{name: o.Name, opts: o, log: log, shared: shared, stop: make(chan struct{}), mono: monotonic}
	switch o.Balance {
	case "", RoundRobin, LeastRequest:
	case EWMA:
		u.ewma, u.tau = true, float64(cmp.Or(o.EWMADecay, DefaultEWMADecay))
	case Hash:
		spec, err := parseHashOn(o.HashOn)
		if err != nil {
			return nil, err
		}
		u.hash, u.factor = spec, cmp.Or(o.HashBalanceFactor, DefaultHashBalanceFactor)
		if u.factor < 1 {
			return nil, fmt.Errorf("hash_balance_factor %g: must be at least 1", u.factor)
		}
	default:
		return nil, fmt.Errorf("unknown balancer %q", o.Balance)
	}
	key := fmt.Sprintf("transport/%s/%+v", o.Name, o.Transport)
	obj, rel, err := shared.Acquire(key, func() (any, error) { return newTransport(o.Transport) })
	if err != nil {
		return nil, err
	}
	u.release = append(u.release, rel)
	u.transport = obj.(*pooledTransport).Transport
	specs := o.Targets
	if o.DNS != nil {
		specs, err = resolve(context.Background(), o.DNS)
		if err != nil {
			u.Close()
			return nil, fmt.Errorf("discover %s: %w", o.DNS.query(), err)
		}
	}
	ts, err := u.makeTargets(specs)
	if err != nil {
		u.Close()
		return nil, err
	}
	u.setTargets(ts)
	if o.DNS != nil {
		u.wg.Add(1)
		go u.discover()
	}
	return u, nil
}

// setTargets publishes a new target set (and its ring) and returns the old one.
func (u *Upstream) setTargets(ts []*Target) []*Target {
	var r *ring
	if u.hash.on != hashNone {
		r = buildRing(ts) // built outside the lock: picks go on meanwhile
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if r != nil {
		u.ring.Store(r)
	}
	if old := u.targets.Swap(&ts); old != nil {
		return *old
	}
	return nil
}

func (u *Upstream) makeTargets(specs []TargetSpec) ([]*Target, error) {
	var ts []*Target
	for _, s := range specs {
		t := &Target{URL: s.URL, Key: s.URL.Scheme + "://" + s.URL.Host, Weight: max(s.Weight, 0)}
		hkey := fmt.Sprintf("target/%s/%s/%+v", u.name, t.Key, u.opts.Active)
		obj, rel, err := u.shared.Acquire(hkey, func() (any, error) {
			return newHealth(t.URL, u.opts.Active, u.transport, u.log.With("target", t.Key)), nil
		})
		if err != nil {
			for _, x := range ts {
				x.rel()
			}
			return nil, err
		}
		t.state, t.rel = obj.(*health), rel
		ts = append(ts, t)
	}
	return ts, nil
}

// Close stops discovery and releases pooled state.
func (u *Upstream) Close() error {
	select {
	case <-u.stop:
		return nil
	default:
	}
	close(u.stop)
	u.wg.Wait()
	if p := u.targets.Load(); p != nil {
		for _, t := range *p {
			t.rel()
		}
	}
	for _, r := range u.release {
		r()
	}
	return nil
}

// Name returns the upstream's name.
func (u *Upstream) Name() string { return u.name }

// Transport returns the shared transport.
func (u *Upstream) Transport() *http.Transport { return u.transport }

// Retry returns the retry policy.
func (u *Upstream) Retry() RetryPolicy { return u.opts.Retry }

// Status reports the targets' state.
func (u *Upstream) Status() Status {
	st := Status{Name: u.name, Balance: u.balance(), HashOn: u.opts.HashOn, Targets: []TargetStatus{}}
	now := time.Now()
	mono := u.mono(now)
	for _, t := range *u.targets.Load() {
		ts := TargetStatus{URL: t.Key, Weight: t.Weight, Healthy: t.state.healthy.Load(),
			InFlight: t.state.inflight.Load(), ConsecutiveFailures: int(t.state.failures.Load())}
		if until := t.state.ejectedUntil.Load(); until > now.UnixNano() {
			tm := time.Unix(0, until)
			ts.EjectedUntil = &tm
		}
		if u.ewma {
			if est, ok := t.state.rtt.current(mono, u.tau); ok {
				ms := est / 1e6
				ts.LatencyMillis = &ms
			}
		}
		st.Targets = append(st.Targets, ts)
	}
	return st
}

func (u *Upstream) balance() string {
	if u.opts.Balance == "" {
		return "round_robin"
	}
	return u.opts.Balance
}

func (t *Target) available(now int64) bool {
	return t.Weight > 0 && t.state.healthy.Load() && t.state.ejectedUntil.Load() <= now
}

// Pick chooses a target that is available and not in tried, as PickKey does for a request
// without a hash key.
func (u *Upstream) Pick(tried []*Target) (*Target, error) { return u.PickKey(tried, Key{}) }

// PickKey chooses a target that is available and not in tried. k is the request's RequestKey;
// only the hash balancer reads it, and balances a request without one round robin.
func (u *Upstream) PickKey(tried []*Target, k Key) (*Target, error) {
	now := time.Now()
	f := filter{now: now.UnixNano(), tried: tried}
	switch u.opts.Balance {
	case LeastRequest:
		return u.pickLeastRequest(*u.targets.Load(), f)
	case EWMA:
		return u.pickEWMA(*u.targets.Load(), f, u.mono(now))
	case Hash:
		if k.ok {
			return u.pickHash(u.ring.Load(), k, f)
		}
	}
	return u.pickRoundRobin(*u.targets.Load(), f)
}

// pickLeastRequest is power of two choices on attempts in flight per weight.
func (u *Upstream) pickLeastRequest(ts []*Target, f filter) (*Target, error) {
	var a, b *Target
	n := len(ts)
	if n == 0 {
		return nil, ErrNoHealthyTarget
	}
	// Power of two choices: sample two available targets, take the less loaded per weight.
	start := rand.IntN(n)
	for i := 0; i < n && b == nil; i++ {
		t := ts[(start+i*7919)%n]
		if !f.ok(t) || t == a {
			continue
		}
		if a == nil {
			a = t
		} else {
			b = t
		}
	}
	if a == nil {
		for _, t := range ts {
			if f.ok(t) {
				return t, nil
			}
		}
		return nil, ErrNoHealthyTarget
	}
	if b != nil && b.state.inflight.Load()*int64(a.Weight) < a.state.inflight.Load()*int64(b.Weight) {
		return b, nil
	}
	return a, nil
}

// pickRoundRobin is smooth weighted round robin (nginx): every available target gains its
// weight, the largest is picked and pays the total. Deterministic and evenly interleaved.
func (u *Upstream) pickRoundRobin(ts []*Target, f filter) (*Target, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var best *Target
	total := 0
	for _, t := range ts {
		if !f.ok(t) {
			continue
		}
		t.cw += t.Weight
		total += t.Weight
		if best == nil || t.cw > best.cw {
			best = t
		}
	}
	if best == nil {
		return nil, ErrNoHealthyTarget
	}
	best.cw -= total
	return best, nil
}

// Outcome is the result of one attempt, for passive health.
type Outcome uint8

// Attempt outcomes.
const (
	Success Outcome = iota
	Failure         // connect failure, timeout, reset, or 502/503/504
)

// Begin counts an attempt in flight on t.
func (t *Target) Begin() { t.state.inflight.Add(1) }

// End finishes an attempt and feeds passive health and, for the ewma balancer, the target's
// latency estimate. latency is the attempt's time to response headers (or to its failure).
func (u *Upstream) End(t *Target, o Outcome, latency time.Duration) {
	t.state.inflight.Add(-1)
	if u.ewma {
		t.state.rtt.observe(u.mono(time.Now()), float64(max(latency, 1)), u.tau, o != Success)
	}
	p := u.opts.Passive
	if o == Success {
		t.state.failures.Store(0)
		return
	}
	n := t.state.failures.Add(1)
	if p == nil || int(n) < p.ConsecutiveFailures {
		return
	}
	// Never eject more than MaxEjectionPercent of the pool (floored; a pool of one is never
	// ejected at 50%): ejecting everything turns a partial outage into a total one.
	ts := *u.targets.Load()
	now := time.Now().UnixNano()
	ejected := 0
	for _, x := range ts {
		if x.state.ejectedUntil.Load() > now {
			ejected++
		}
	}
	if (ejected+1)*100 > p.MaxEjectionPercent*len(ts) {
		return
	}
	if t.state.ejectedUntil.Load() <= now {
		t.state.ejectedUntil.Store(now + int64(p.EjectFor))
		t.state.failures.Store(0)
		u.log.Warn("target ejected", "upstream", u.name, "target", t.Key, "for", p.EjectFor)
	}
}

// BeginRequest and EndRequest count requests for the retry budget.
func (u *Upstream) BeginRequest() { u.requests.Add(1) }

// EndRequest ends a request started with BeginRequest.
func (u *Upstream) EndRequest() { u.requests.Add(-1) }

// TryRetry reserves a retry if the budget allows (Envoy-style: retries in flight below a share
// of requests in flight, with a floor of 3 so quiet upstreams can still retry).
func (u *Upstream) TryRetry() bool {
	limit := int64(u.opts.Retry.Budget * float64(u.requests.Load()))
	if limit < 3 {
		limit = 3
	}
	if u.retries.Add(1) > limit {
		u.retries.Add(-1)
		return false
	}
	return true
}

// DoneRetry releases a reserved retry.
func (u *Upstream) DoneRetry() { u.retries.Add(-1) }

type pooledTransport struct{ *http.Transport }

func (p *pooledTransport) Close() error { p.CloseIdleConnections(); return nil }

func newTransport(o TransportOptions) (*pooledTransport, error) {
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		MaxConnsPerHost:       o.MaxConnsPerTarget,
		IdleConnTimeout:       o.IdleTimeout,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	protos := new(http.Protocols)
	switch o.Protocol {
	case "h2":
		protos.SetHTTP2(true)
		t.ForceAttemptHTTP2 = true
	case "h2c":
		protos.SetUnencryptedHTTP2(true)
	default:
		protos.SetHTTP1(true)
	}
	t.Protocols = protos
	if o.CAFile != "" || o.CertFile != "" || o.ServerName != "" {
		cfg := &tls.Config{ServerName: o.ServerName, MinVersion: tls.VersionTLS12}
		if o.CAFile != "" {
			pem, err := os.ReadFile(o.CAFile)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("no certificates in %s", o.CAFile)
			}
			cfg.RootCAs = pool
		}
		if o.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
			if err != nil {
				return nil, err
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		t.TLSClientConfig = cfg
	}
	return &pooledTransport{t}, nil
}

// health is a target's reload-surviving state, with its active checker.
type health struct {
	healthy      atomic.Bool
	ejectedUntil atomic.Int64
	failures     atomic.Int32
	inflight     atomic.Int64
	rtt          latency // peak-EWMA latency, fed while the ewma balancer is configured
	stop         chan struct{}
	done         chan struct{}
}

func newHealth(target *url.URL, check *ActiveCheck, rt http.RoundTripper, log *slog.Logger) *health {
	h := &health{stop: make(chan struct{}), done: make(chan struct{})}
	h.healthy.Store(true) // a new config serves at once; checks take it out if it is down
	if check == nil || check.Interval <= 0 {
		close(h.done)
		return h
	}
	go h.run(target, check, rt, log)
	return h
}

// Close stops the checker.
func (h *health) Close() error {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	return nil
}

func (h *health) run(target *url.URL, c *ActiveCheck, rt http.RoundTripper, log *slog.Logger) {
	defer close(h.done)
	client := &http.Client{Transport: rt, Timeout: c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	probe := target.Scheme + "://" + target.Host + c.Path
	ok, bad := 0, 0
	tick := time.NewTicker(c.Interval)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
		go func() {
			select {
			case <-h.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		healthy := probeOnce(ctx, client, probe, c.ExpectStatus)
		cancel()
		if healthy {
			ok, bad = ok+1, 0
			if ok >= c.HealthyAfter && !h.healthy.Load() {
				h.healthy.Store(true)
				log.Info("target healthy again")
			}
		} else {
			ok, bad = 0, bad+1
			if bad >= c.UnhealthyAfter && h.healthy.Load() {
				h.healthy.Store(false)
				log.Warn("target failed its health check")
			}
		}
	}
}

func probeOnce(ctx context.Context, client *http.Client, probe string, expect []int) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probe, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "limen-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	for read := 0; read < 64<<10; {
		n, err := resp.Body.Read(buf)
		read += n
		if err != nil {
			break
		}
	}
	if len(expect) > 0 {
		for _, s := range expect {
			if resp.StatusCode == s {
				return true
			}
		}
		return false
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// discover refreshes DNS targets, keeping the last good set when resolution fails or finds
// nothing. A failure is logged once per streak of failures, and the recovery once.
func (u *Upstream) discover() {
	defer u.wg.Done()
	tick := time.NewTicker(u.opts.DNS.Refresh)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-u.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		specs, err := resolve(ctx, u.opts.DNS)
		cancel()
		if err != nil {
			if !failing {
				u.log.Warn("dns discovery failed; keeping the last good targets", "upstream", u.name, "name", u.opts.DNS.query(), "err", err)
			}
			failing = true
			u.refreshes.Add(1)
			continue
		}
		if failing {
			u.log.Info("dns discovery recovered", "upstream", u.name, "name", u.opts.DNS.query(), "targets", len(specs))
		}
		failing = false
		if ts, err := u.makeTargets(specs); err == nil {
			for _, t := range u.setTargets(ts) {
				t.rel()
			}
		}
		u.refreshes.Add(1)
	}
}

// resolver is the system resolver, or one that asks only the DNS server at addr (host:port).
func resolver(addr string) *net.Resolver {
	if addr == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, network, addr)
	}}
}

func resolve(ctx context.Context, d *DNSOptions) ([]TargetSpec, error) {
	r := resolver(d.Resolver)
	scheme := cmp.Or(d.Scheme, "http")
	if d.SRV != "" {
		return resolveSRV(ctx, r, d.SRV, scheme)
	}
	ips, err := r.LookupIPAddr(ctx, d.Name)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no addresses", d.Name)
	}
	out := make([]TargetSpec, 0, len(ips))
	for _, ip := range ips {
		out = append(out, TargetSpec{URL: &url.URL{Scheme: scheme, Host: net.JoinHostPort(ip.IP.String(), strconv.Itoa(d.Port))}, Weight: 1})
	}
	return out, nil
}

// resolveSRV looks up name's SRV records and then the A/AAAA addresses of their targets, through
// the same resolver; every address is a target on the record's port with the record's weight.
//
// Only the lowest priority group with at least one address is used (RFC 2782: a client must
// contact the lowest-numbered priority it can reach). A higher-numbered group is a fallback only
// when every target of the preferred group is gone from DNS (no records, or hosts without
// addresses); a preferred group that is merely unhealthy does not fail over to it.
//
// The weight is the target's balancing weight, except that 0 becomes 1: RFC 2782 gives weight 0
// "a very small chance of being selected" when others are heavier, and a target of weight 0
// would never be picked here. Records with the target "." (the service is decidedly not
// available, RFC 2782) are skipped. A host whose lookup fails for any reason other than "no such
// host" fails the whole resolution, so a DNS hiccup keeps the last good set instead of
// shrinking it.
func resolveSRV(ctx context.Context, r *net.Resolver, name, scheme string) ([]TargetSpec, error) {
	_, srvs, err := r.LookupSRV(ctx, "", "", name)
	if len(srvs) == 0 {
		if err == nil {
			err = fmt.Errorf("%s has no SRV records", name)
		}
		return nil, err
	}
	// An error alongside records means some records had invalid target names and were dropped
	// (net.Resolver.LookupSRV); the others are still good.
	slices.SortStableFunc(srvs, func(a, b *net.SRV) int { return cmp.Compare(a.Priority, b.Priority) })
	for len(srvs) > 0 {
		n := 1
		for n < len(srvs) && srvs[n].Priority == srvs[0].Priority {
			n++
		}
		out, err := resolveSRVGroup(ctx, r, scheme, srvs[:n])
		if err != nil {
			return nil, err
		}
		if len(out) > 0 {
			return out, nil
		}
		srvs = srvs[n:]
	}
	return nil, fmt.Errorf("no target of the SRV records of %s has an address", name)
}

// resolveSRVGroup resolves the hosts of one priority group concurrently. Addresses reached
// through several records (the same host listed twice, or two hosts sharing an address) are
// one target with the sum of their weights. The targets are sorted, so a refresh that finds
// the same records yields the same order.
func resolveSRVGroup(ctx context.Context, r *net.Resolver, scheme string, group []*net.SRV) ([]TargetSpec, error) {
	type lookup struct {
		ips []net.IPAddr
		err error
	}
	hosts := map[string]*lookup{}
	for _, s := range group {
		if s.Target != "." && s.Target != "" && hosts[s.Target] == nil {
			hosts[s.Target] = new(lookup)
		}
	}
	var wg sync.WaitGroup
	for h, l := range hosts {
		wg.Go(func() { l.ips, l.err = r.LookupIPAddr(ctx, h) })
	}
	wg.Wait()
	weights := map[string]int{}
	for _, s := range group {
		l := hosts[s.Target]
		if l == nil {
			continue
		}
		if l.err != nil {
			if de, ok := errors.AsType[*net.DNSError](l.err); ok && de.IsNotFound {
				continue // the host is gone from DNS; its records are not usable
			}
			return nil, fmt.Errorf("resolve SRV target %s: %w", s.Target, l.err)
		}
		for _, ip := range l.ips {
			weights[net.JoinHostPort(ip.IP.String(), strconv.Itoa(int(s.Port)))] += max(int(s.Weight), 1)
		}
	}
	out := make([]TargetSpec, 0, len(weights))
	for _, host := range slices.Sorted(maps.Keys(weights)) {
		out = append(out, TargetSpec{URL: &url.URL{Scheme: scheme, Host: host}, Weight: weights[host]})
	}
	return out, nil
}
