// Package runtime compiles a configuration into an immutable Snapshot (routers, upstream pools,
// policy chains) and runs the reload transaction: build everything, swap one pointer, release
// what the old snapshot alone used. It is the only package that assembles chains.
package runtime

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/internal/audit"
	"github.com/limen-gateway/limen/internal/breaker"
	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/router"
	"github.com/limen-gateway/limen/internal/telemetry"
	"github.com/limen-gateway/limen/internal/upstream"
	"github.com/limen-gateway/limen/internal/usage"
	"github.com/limen-gateway/limen/policy"
)

// Snapshot is one compiled configuration. It never changes after it is built; a reload builds a
// new one and swaps it in. In-flight requests finish on the snapshot they started on.
type Snapshot struct {
	Doc  *config.Document
	Hash string

	routes    []*Route
	byName    map[string]*Route
	listeners map[string]*listenerRoutes
	upstreams map[string]*upstream.Upstream
	access    *telemetry.AccessLog
	audit     *audit.Log
	usage     *usage.Meter
	engines   map[string]any              // shared-state engines, for metrics
	breakers  map[string]*breaker.Breaker // upstream circuit breakers, by upstream

	releases []func()     // pool references and closers, released with the snapshot
	closers  []io.Closer  // policy instances holding resources
	inflight atomic.Int64 // requests currently using the snapshot
	retired  atomic.Bool
	release  sync.Once
	timerMu  sync.Mutex
	timer    *time.Timer
}

// listenerRoutes is the routing table of one listener: only the routes bound to it.
type listenerRoutes struct {
	table  *router.Table
	routes []*Route
}

// Route is a compiled route: its whole chain (policies in phase order, then the terminal) and its
// pre-resolved metric series.
type Route struct {
	Name      string
	Config    *config.Route
	Chain     []ChainStep
	Terminal  string
	reporters []policy.Reporter // parallel to Chain; nil where a step reports nothing
	handler   policy.Handler
	metrics   *telemetry.RouteMetrics
	upgrades  []string
	listeners []string
}

// ChainStep describes one policy instance in a route's effective chain, for the admin API and
// `limen explain`.
type ChainStep struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Phase  string `json:"phase"`
	Shared bool   `json:"shared"`
	// State is the instance's live report (policy.Reporter), read when asked.
	State map[string]any `json:"state,omitempty"`
}

// enter marks a request as using s; it reports false if s was retired meanwhile, and then the
// caller must load the current snapshot again.
func (s *Snapshot) enter() bool {
	s.inflight.Add(1)
	if s.retired.Load() {
		s.leave()
		return false
	}
	return true
}

func (s *Snapshot) leave() {
	if s.inflight.Add(-1) == 0 && s.retired.Load() {
		s.close()
	}
}

// retire is called once s is no longer current: it is released when its last request finishes, or
// after drain at the latest (long-lived streams hold their own references to what they use).
func (s *Snapshot) retire(drain time.Duration) {
	s.retired.Store(true)
	if s.inflight.Load() == 0 {
		s.close()
		return
	}
	s.timerMu.Lock()
	s.timer = time.AfterFunc(drain, s.close)
	s.timerMu.Unlock()
}

func (s *Snapshot) close() {
	s.release.Do(func() {
		s.timerMu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		s.timerMu.Unlock()
		for _, c := range s.closers {
			_ = c.Close()
		}
		for _, u := range s.upstreams {
			_ = u.Close()
		}
		// The access log and audit trail are pooled: releasing closes them when no other
		// snapshot holds them. Closing them here would silence the snapshot that replaced this one.
		for i := len(s.releases) - 1; i >= 0; i-- {
			s.releases[i]()
		}
	})
}
