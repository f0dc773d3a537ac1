// Package plan provides the plan policy: every consumer's usage plan (top-level plans:, named by
// consumers[].plan) applied on the route: the plan's smooth rate limits and its calendar quotas
// (per day or month, in the plan's time zone), counted per consumer, locally or in Redis.
package plan

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/limen-gateway/limen/internal/state"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "plan"

// phases: Limit, after authentication (the plan is the consumer's).
var phases = policy.PhaseRange{Default: policy.Limit, Min: policy.Authz, Max: policy.Cache}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*planPolicy)(nil)

type planPolicy struct {
	cfg      Config
	plans    map[string]state.Plan
	limiter  *state.MemoryLimiter
	quotas   *state.MemoryQuotas
	rlimiter *state.RedisLimiter
	rquotas  *state.RedisQuotas
	release  []func()
	now      func() time.Time
}

var (
	errPlanRequired = &policy.Error{Status: http.StatusForbidden, Code: "plan_required", Detail: "this API needs a consumer with a usage plan"}
	errUnavailable  = &policy.Error{Status: http.StatusServiceUnavailable, Code: "plan_state_unavailable",
		Detail: "usage counters are unavailable; retry shortly", Header: http.Header{"Retry-After": {"1"}}}
)

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	plans, _ := bc.Shared["plans"].(map[string]state.Plan)
	if c.DefaultPlan != "" {
		if _, ok := plans[c.DefaultPlan]; !ok {
			return nil, fmt.Errorf("default_plan: no plan named %q under top-level plans", c.DefaultPlan)
		}
	}
	p := &planPolicy{cfg: *c, plans: plans, now: time.Now}
	acquire := func(key string, create func() any) (any, error) {
		obj, release, err := bc.Acquire(key, func() (any, error) { return create(), nil })
		if err == nil {
			p.release = append(p.release, release)
		}
		return obj, err
	}
	// Counters are keyed by the instance, never by the plans' numbers: editing a plan keeps
	// what consumers used.
	obj, err := acquire("plan|limits|"+bc.ID, func() any { return state.NewMemoryLimiter(0) })
	if err != nil {
		return nil, err
	}
	p.limiter = obj.(*state.MemoryLimiter)
	if obj, err = acquire("plan|quotas|"+bc.ID, func() any { return state.NewMemoryQuotas(0) }); err != nil {
		return nil, err
	}
	p.quotas = obj.(*state.MemoryQuotas)
	if c.Backend == "redis" {
		r, _ := bc.Shared["redis"].(*state.Redis)
		if r == nil {
			return nil, errors.New("backend: redis needs a top-level state: { redis: { url: ... } }")
		}
		p.rlimiter, p.rquotas = r.Limiter("plan:"+bc.ID), r.Quotas("plan:"+bc.ID)
	}
	return p, nil
}

// Close releases the shared counters.
func (p *planPolicy) Close() error {
	for _, r := range p.release {
		r()
	}
	return nil
}

func (p *planPolicy) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		pr := policy.PrincipalFrom(r.Context())
		name := ""
		if pr.Identified() {
			name = pr.Plan
			if name == "" {
				name = p.cfg.DefaultPlan
			}
		}
		pl, ok := p.plans[name]
		if name == "" || !ok {
			if p.cfg.MissingPlan == "deny" {
				return errPlanRequired
			}
			return next.ServeHTTP(w, r)
		}
		if err := p.check(w, r, pr.ID, pl); err != nil {
			return err
		}
		return next.ServeHTTP(w, r)
	})
}

// check applies the plan's rates, then its quotas. A refused request consumes nothing: one the
// rates refuse takes nothing from the quotas, and one a quota refuses has its rate refunded.
func (p *planPolicy) check(w http.ResponseWriter, r *http.Request, consumer string, pl state.Plan) error {
	now := p.now()
	counted := counter(none)
	if len(pl.Limits) > 0 {
		d, by, err := p.rate(r, consumer, pl.Limits, now)
		if err != nil {
			return err
		}
		counted = by
		if !d.Allowed {
			return &policy.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
				Detail: "the plan's rate limit is exceeded; retry after the time in Retry-After",
				Header: http.Header{"Retry-After": {strconv.FormatInt(ceilSeconds(d.RetryAfter), 10)}}}
		}
	}
	if len(pl.Quotas) == 0 {
		return nil
	}
	d, err := p.quota(r, consumer, pl.Quotas, now)
	if err != nil {
		return err
	}
	q := pl.Quotas[d.Quota]
	name := `"quota-` + q.Period + `"`
	if !d.Allowed {
		p.refund(r, counted, consumer, pl.Limits)
		return &policy.Error{Status: http.StatusTooManyRequests, Code: "quota_exceeded",
			Detail: "the plan's " + q.Period + "ly quota is used up; it resets at the time in Retry-After",
			Header: http.Header{
				"Retry-After": {strconv.FormatInt(ceilSeconds(d.Reset.Sub(now)), 10)},
				"Ratelimit":   {name + ";r=0;t=" + strconv.FormatInt(ceilSeconds(d.Reset.Sub(now)), 10)},
			}}
	}
	if d.Remaining >= 0 {
		w.Header()["Ratelimit"] = []string{name + ";r=" + strconv.Itoa(d.Remaining) + ";t=" + strconv.FormatInt(ceilSeconds(d.Reset.Sub(now)), 10)}
	}
	return nil
}

// counter names the table that counted a request's rate, to refund it there.
type counter int

const (
	none counter = iota
	redisTable
	memoryTable
)

// rate checks the plan's rates and says which table counted the request.
func (p *planPolicy) rate(r *http.Request, consumer string, limits []state.Limit, now time.Time) (state.Decision, counter, error) {
	if p.rlimiter != nil {
		d, err := p.rlimiter.Allow(r.Context(), []byte(consumer), limits)
		if err == nil {
			return d, redisTable, nil
		}
		if d, ok, perr := p.onError(); !ok {
			return d, none, perr
		}
	}
	return p.limiter.Allow([]byte(consumer), limits, now), memoryTable, nil
}

// refund gives an admitted request's rate back after a quota refused it.
func (p *planPolicy) refund(r *http.Request, by counter, consumer string, limits []state.Limit) {
	switch by {
	case redisTable:
		// A failed refund leaves the rate spent: the request was refused either way.
		_ = p.rlimiter.Refund(r.Context(), []byte(consumer), limits)
	case memoryTable:
		p.limiter.Refund([]byte(consumer), limits)
	}
}

func (p *planPolicy) quota(r *http.Request, consumer string, quotas []state.Quota, now time.Time) (state.QuotaDecision, error) {
	if p.rquotas != nil {
		d, err := p.rquotas.Take(r.Context(), consumer, quotas, now)
		if err == nil {
			return d, nil
		}
		switch p.cfg.OnError {
		case "allow":
			return state.QuotaDecision{Allowed: true, Remaining: -1}, nil
		case "deny":
			return state.QuotaDecision{}, errUnavailable
		}
	}
	return p.quotas.Take(consumer, quotas, now), nil
}

// onError resolves a Redis failure for the rate check: ok means fall back to the local table.
func (p *planPolicy) onError() (state.Decision, bool, error) {
	switch p.cfg.OnError {
	case "allow":
		return state.Decision{Allowed: true}, false, nil
	case "deny":
		return state.Decision{}, false, errUnavailable
	}
	return state.Decision{}, true, nil
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
