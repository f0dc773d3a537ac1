// Package breaker provides the circuit_breaker policy (sony/gobreaker v2): a route whose upstream
// keeps failing is answered at once with a fallback instead of queueing more requests onto it,
// and is probed again after a pause.
//
// The breaker's state lives in the Pool under the instance id and its settings, so a reload that
// keeps the policy keeps an open breaker open.
package breaker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "circuit_breaker"

// phases: just before the terminal by default (Cache is the last phase), so it measures the
// upstream, not the policies in front of it.
var phases = policy.PhaseRange{Default: policy.Cache, Min: policy.Limit, Max: policy.Cache}

func init() {
	policy.Register(Kind, phases, build)
}

var (
	_ policy.Policy   = (*breaker)(nil)
	_ policy.Reporter = (*breaker)(nil)
)

// errFailed is what a failed call reports to gobreaker; the status itself is not needed.
var errFailed = errors.New("upstream failure")

// errExcluded marks a call that says nothing about the upstream (the client went away).
var errExcluded = errors.New("excluded")

type breaker struct {
	id      string
	cfg     Config
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	release func()
	open    *policy.Error
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	settings, _ := json.Marshal(c)
	create := func() (any, error) {
		log := bc.Logger
		return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:         bc.ID,
			MaxRequests:  uint32(c.HalfOpenRequests),
			Interval:     c.Window.D(),
			BucketPeriod: c.Window.D() / 10,
			Timeout:      c.OpenFor.D(),
			ReadyToTrip: func(n gobreaker.Counts) bool {
				if c.ConsecutiveFailures > 0 && int(n.ConsecutiveFailures) >= c.ConsecutiveFailures {
					return true
				}
				return c.FailureRatio > 0 && int(n.Requests) >= c.MinRequests &&
					float64(n.TotalFailures) >= c.FailureRatio*float64(n.Requests)
			},
			IsExcluded: func(err error) bool { return errors.Is(err, errExcluded) },
			OnStateChange: func(name string, from, to gobreaker.State) {
				if log != nil {
					log.Warn("circuit breaker state changed", "policy", name, "from", from.String(), "to", to.String())
				}
			},
		}), nil
	}
	b := &breaker{id: bc.ID, cfg: *c, release: func() {}}
	if bc.Pool != nil {
		obj, release, err := bc.Pool.Acquire("breaker|"+bc.ID+"|"+string(settings), create)
		if err != nil {
			return nil, err
		}
		b.cb, b.release = obj.(*gobreaker.TwoStepCircuitBreaker[struct{}]), release
	} else {
		obj, _ := create()
		b.cb = obj.(*gobreaker.TwoStepCircuitBreaker[struct{}])
	}
	retry := strconv.FormatInt(int64((c.OpenFor.D()+time.Second-1)/time.Second), 10)
	b.open = &policy.Error{Status: http.StatusServiceUnavailable, Code: "circuit_open",
		Detail: "the upstream is failing; this route answers at once until it recovers",
		Header: http.Header{"Retry-After": {retry}}}
	return b, nil
}

// Close releases the shared breaker.
func (b *breaker) Close() error {
	b.release()
	return nil
}

// State reports the breaker's state ("closed", "half-open", "open"), for tests and status pages.
func (b *breaker) State() string { return b.cb.State().String() }

// Report shows the breaker in GET /admin/routes.
func (b *breaker) Report() map[string]any {
	c := b.cb.Counts()
	return map[string]any{"state": b.cb.State().String(), "requests": c.Requests,
		"consecutive_failures": c.ConsecutiveFailures, "total_failures": c.TotalFailures}
}

func (b *breaker) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		done, err := b.cb.Allow()
		if err != nil {
			return b.fallback(w, r)
		}
		sw := &statusWriter{ResponseWriter: w, start: time.Now()}
		err = next.ServeHTTP(sw, r)
		done(b.outcome(r.Context(), sw, err))
		return err
	})
}

// outcome classifies a finished call for the breaker.
func (b *breaker) outcome(ctx context.Context, sw *statusWriter, err error) error {
	status, took := sw.status, sw.headerAfter
	if err != nil {
		var pe *policy.Error
		if errors.As(err, &pe) {
			status = pe.Status
		}
		took = time.Since(sw.start)
	}
	switch {
	case ctx.Err() != nil && (err != nil || status == 0):
		return errExcluded // the client went away: nothing learned about the upstream
	case err != nil && status >= 400 && status < 500:
		return errExcluded // refused for the client's own fault (a bad body, a policy)
	case err != nil, slices.Contains(b.cfg.FailureStatuses, status):
		return errFailed
	case b.cfg.SlowCall != nil && took > b.cfg.SlowCall.D():
		return errFailed
	}
	return nil
}

// fallback answers while the breaker is open.
func (b *breaker) fallback(w http.ResponseWriter, r *http.Request) error {
	f := b.cfg.Fallback
	if f == nil {
		return b.open
	}
	if ex := policy.ExchangeFrom(r.Context()); ex != nil {
		ex.DeniedBy, ex.ErrorCode = b.id, "circuit_open" // the access log shows who answered
	}
	h := w.Header()
	for k, v := range f.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Length", strconv.Itoa(len(f.Body)))
	w.WriteHeader(f.Status)
	_, err := w.Write([]byte(f.Body))
	return err
}

// statusWriter records the status and when the response headers went out. Unwrap lets
// http.ResponseController reach the connection (flushes, hijacks, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status      int
	start       time.Time
	headerAfter time.Duration
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status, s.headerAfter = code, time.Since(s.start)
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status, s.headerAfter = http.StatusOK, time.Since(s.start)
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes through for the common case; ResponseController also finds it through Unwrap.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
