// Package breaker is the circuit breaker Limen puts in front of a route's terminal (the
// circuit_breaker policy) or an upstream pool (upstreams.*.circuit_breaker), on sony/gobreaker
// v2: it trips on consecutive failures, a failure ratio over a rolling window, or slow calls;
// while open it answers with a fallback at once; after a pause it lets probes through.
package breaker

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/limen-gateway/limen/policy"
)

// Settings configure a breaker. Zero values were defaulted by the config.
type Settings struct {
	Name                string
	ConsecutiveFailures int
	FailureRatio        float64
	MinRequests         int
	Window              time.Duration
	SlowCall            time.Duration // 0: off
	OpenFor             time.Duration
	HalfOpenRequests    int
	FailureStatuses     []int
	OnStateChange       func(from, to string)
}

// Breaker is one circuit breaker; it is safe for concurrent use and is meant to be shared
// (through the Pool) by every snapshot that keeps it.
type Breaker struct {
	s  Settings
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// errFailed and errExcluded are what a call reports to gobreaker.
var (
	errFailed   = errors.New("upstream failure")
	errExcluded = errors.New("excluded")
)

// New makes a closed breaker.
func New(s Settings) *Breaker {
	b := &Breaker{s: s}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         s.Name,
		MaxRequests:  uint32(max(s.HalfOpenRequests, 1)),
		Interval:     s.Window,
		BucketPeriod: s.Window / 10,
		Timeout:      s.OpenFor,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			if s.ConsecutiveFailures > 0 && int(n.ConsecutiveFailures) >= s.ConsecutiveFailures {
				return true
			}
			// Only calls that said something about the upstream count: excluded ones (client
			// faults, cancellations) and calls still running would dilute the ratio.
			counted := n.TotalSuccesses + n.TotalFailures
			return s.FailureRatio > 0 && int(counted) >= s.MinRequests &&
				float64(n.TotalFailures) >= s.FailureRatio*float64(counted)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if s.OnStateChange != nil {
				s.OnStateChange(from.String(), to.String())
			}
		},
	})
	return b
}

// State is "closed", "half-open" or "open".
func (b *Breaker) State() string { return b.cb.State().String() }

// Report is the breaker's state and counts, for the admin API.
func (b *Breaker) Report() map[string]any {
	c := b.cb.Counts()
	return map[string]any{"state": b.cb.State().String(), "requests": c.Requests,
		"consecutive_failures": c.ConsecutiveFailures, "total_failures": c.TotalFailures}
}

// Wrap guards next: while the breaker is open, open answers instead. The outcome is reported
// as soon as the response headers are written (a stream that then lasts for hours must not hold
// the half-open probe slot), and always exactly once, even when next panics (an aborted stream).
func (b *Breaker) Wrap(next, open policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) (err error) {
		done, aerr := b.cb.Allow()
		if aerr != nil {
			return open.ServeHTTP(w, r)
		}
		sw := &statusWriter{ResponseWriter: w, start: time.Now(), b: b, done: done}
		defer func() {
			if p := recover(); p != nil {
				outcome := errFailed
				if r.Context().Err() != nil {
					outcome = errExcluded // the client went away mid-stream
				}
				sw.report(outcome)
				panic(p)
			}
			sw.report(b.outcome(r.Context(), sw, err))
		}()
		return next.ServeHTTP(sw, r)
	})
}

// outcome classifies a finished call.
func (b *Breaker) outcome(ctx context.Context, sw *statusWriter, err error) error {
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
	case err != nil, slices.Contains(b.s.FailureStatuses, status):
		return errFailed
	case b.s.SlowCall > 0 && took > b.s.SlowCall:
		return errFailed
	}
	return nil
}

// statusWriter records the status and when the response headers went out, and reports the
// outcome to the breaker then. Unwrap lets http.ResponseController reach the connection
// (flushes, hijacks, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status      int
	start       time.Time
	headerAfter time.Duration
	b           *Breaker
	done        func(error)
}

// report tells the breaker the call's outcome, once.
func (s *statusWriter) report(outcome error) {
	if s.done != nil {
		s.done(outcome)
		s.done = nil
	}
}

func (s *statusWriter) headers(code int) {
	if s.status != 0 {
		return
	}
	s.status, s.headerAfter = code, time.Since(s.start)
	var outcome error
	switch {
	case slices.Contains(s.b.s.FailureStatuses, code):
		outcome = errFailed
	case s.b.s.SlowCall > 0 && s.headerAfter > s.b.s.SlowCall:
		outcome = errFailed
	}
	s.report(outcome)
}

func (s *statusWriter) WriteHeader(code int) {
	if code >= 200 {
		s.headers(code)
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	s.headers(http.StatusOK)
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes through for the common case; ResponseController also finds it through Unwrap.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
