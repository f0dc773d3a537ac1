// Package concurrency provides the concurrency_limit policy: at most max requests in flight per
// route, consumer or client IP, with an optional short queue, answering 503 when full (load
// shedding, so a slow upstream cannot tie up every connection of the gateway).
//
// The slot tables live in the Pool under the instance id and key, so requests still in flight
// across a reload keep counting against the same limit rather than a fresh one.
package concurrency

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "concurrency_limit"

var phases = policy.PhaseRange{Default: policy.Limit, Min: policy.Edge, Max: policy.Cache}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*limiter)(nil)

var errShed = &policy.Error{Status: http.StatusServiceUnavailable, Code: "concurrency_limited",
	Detail: "too many requests in flight; retry shortly", Header: http.Header{"Retry-After": {"1"}}}

var errNoKey = &policy.Error{Status: http.StatusServiceUnavailable, Code: "concurrency_key_missing",
	Detail: "this request cannot be attributed to a concurrency key"}

type limiter struct {
	cfg     Config
	table   *table
	release func()
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	obj, release, err := bc.Acquire("concurrency|"+bc.ID+"|"+c.Key, func() (any, error) { return newTable(), nil })
	if err != nil {
		return nil, err
	}
	return &limiter{cfg: *c, table: obj.(*table), release: release}, nil
}

// Close releases the shared slot table.
func (l *limiter) Close() error {
	l.release()
	return nil
}

func (l *limiter) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		key, ok := l.key(r)
		if !ok {
			return errNoKey
		}
		s, ok := l.table.acquire(r.Context(), key, l.cfg.Max, l.cfg.Queue, l.cfg.QueueTimeout.D())
		if !ok {
			return errShed
		}
		defer l.table.release(key, s)
		return next.ServeHTTP(w, r)
	})
}

func (l *limiter) key(r *http.Request) (string, bool) {
	ex := policy.ExchangeFrom(r.Context())
	if ex == nil {
		return "", false
	}
	switch l.cfg.Key {
	case "consumer":
		if !ex.Principal.Identified() {
			return "", false
		}
		return ex.Principal.ID, true
	case "client_ip":
		if !ex.ClientIP.IsValid() {
			return "", false
		}
		return ex.ClientIP.Unmap().String(), true
	}
	return ex.Route, true
}

// table holds one slot count per key. A key with nothing in flight and nobody waiting is
// removed, so the table is bounded by the requests in flight.
type table struct {
	mu    sync.Mutex
	slots map[string]*slots
}

type slots struct {
	inflight int
	waiters  []chan struct{} // FIFO; a released slot is handed to the first
}

func newTable() *table { return &table{slots: map[string]*slots{}} }

// acquire takes a slot for key, waiting in the queue up to timeout when all max are taken and
// fewer than queue requests wait. It reports false when the request is shed.
func (t *table) acquire(ctx context.Context, key string, max, queue int, timeout time.Duration) (*slots, bool) {
	t.mu.Lock()
	s := t.slots[key]
	if s == nil {
		s = &slots{}
		t.slots[key] = s
	}
	if s.inflight < max {
		s.inflight++
		t.mu.Unlock()
		return s, true
	}
	if len(s.waiters) >= queue {
		t.mu.Unlock()
		return nil, false
	}
	ch := make(chan struct{})
	s.waiters = append(s.waiters, ch)
	t.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ch:
		return s, true // the releaser handed its slot over: inflight already counts us
	case <-timer.C:
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, w := range s.waiters {
		if w == ch {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			return nil, false
		}
	}
	// Handed a slot while giving up: give it back.
	t.releaseLocked(key, s)
	return nil, false
}

func (t *table) release(key string, s *slots) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.releaseLocked(key, s)
}

func (t *table) releaseLocked(key string, s *slots) {
	if len(s.waiters) > 0 {
		ch := s.waiters[0]
		s.waiters = s.waiters[1:]
		close(ch) // the slot passes to the waiter; inflight is unchanged
		return
	}
	s.inflight--
	if s.inflight == 0 && t.slots[key] == s {
		delete(t.slots, key)
	}
}
