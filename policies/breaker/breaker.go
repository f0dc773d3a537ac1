// Package breaker provides the circuit_breaker policy (sony/gobreaker v2): a route whose upstream
// keeps failing is answered at once with a fallback instead of queueing more requests onto it,
// and is probed again after a pause.
//
// The breaker's state lives in the Pool under the instance id and its settings, so a reload that
// keeps the policy keeps an open breaker open.
package breaker

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	cb "github.com/limen-gateway/limen/internal/breaker"
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

type breaker struct {
	id      string
	cfg     Config
	b       *cb.Breaker
	release func()
	open    *policy.Error
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	settings, _ := json.Marshal(c)
	log := bc.Logger
	create := func() (any, error) {
		s := cb.Settings{Name: bc.ID, ConsecutiveFailures: c.ConsecutiveFailures, FailureRatio: c.FailureRatio,
			MinRequests: c.MinRequests, Window: c.Window.D(), OpenFor: c.OpenFor.D(), HalfOpenRequests: c.HalfOpenRequests,
			FailureStatuses: c.FailureStatuses}
		if c.SlowCall != nil {
			s.SlowCall = c.SlowCall.D()
		}
		if log != nil {
			s.OnStateChange = func(from, to string) {
				log.Warn("circuit breaker state changed", "policy", bc.ID, "from", from, "to", to)
			}
		}
		return cb.New(s), nil
	}
	obj, release, err := bc.Acquire("breaker|"+bc.ID+"|"+string(settings), create)
	if err != nil {
		return nil, err
	}
	b := &breaker{id: bc.ID, cfg: *c, b: obj.(*cb.Breaker), release: release}
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
func (b *breaker) State() string { return b.b.State() }

// Report shows the breaker in GET /admin/routes.
func (b *breaker) Report() map[string]any { return b.b.Report() }

func (b *breaker) Wrap(next policy.Handler) policy.Handler {
	return b.b.Wrap(next, policy.HandlerFunc(b.fallback))
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
