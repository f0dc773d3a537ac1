// Package state holds the shared state that outlives a snapshot: the narrow capabilities of
// DESIGN.md ("State and scale-out"), each with an in-memory backend (one node, nothing to run)
// and, later, a Redis backend for several nodes.
package state

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Limit is one rate: Requests per Per, with bursts of up to Burst requests at once.
type Limit struct {
	Requests int
	Per      time.Duration
	Burst    int
}

// interval is the time one request uses up (GCRA's emission interval).
func (l Limit) interval() time.Duration {
	return time.Duration(math.Ceil(float64(l.Per) / float64(l.Requests)))
}

// tolerance is how far ahead of now a key's theoretical arrival time may run: a full burst.
func (l Limit) tolerance() time.Duration {
	return time.Duration(l.Burst) * l.interval()
}

// Decision is the outcome of a check against several limits.
type Decision struct {
	Allowed bool
	// Limit is the index of the limit that decided: the one that refused, or, when allowed,
	// the one with the fewest requests left.
	Limit int
	// Remaining is how many more requests that limit admits right now.
	Remaining int
	// Reset is when that limit is back to a full burst; RetryAfter, when refused, is how long
	// until one more request is admitted.
	Reset, RetryAfter time.Duration
}

// Limiter checks and counts requests against several limits at once. A request is admitted only
// when every limit admits it, and a refused request consumes nothing from any limit.
type Limiter interface {
	Allow(key []byte, limits []Limit, now time.Time) Decision
}

// MemoryLimiter is a Limiter for one node: GCRA (the generic cell rate algorithm, a smooth
// rate with bursts; no window edge lets twice the rate through) over sharded, bounded tables.
type MemoryLimiter struct {
	seed    maphash.Seed
	shards  [64]limiterShard
	maxKeys int // per shard
}

type limiterShard struct {
	mu   sync.Mutex
	tats map[string][]time.Time // key -> theoretical arrival time per limit
}

// NewMemoryLimiter makes a limiter that tracks at most maxKeys keys (100,000 when <= 0). When a
// table is full, keys whose limits have all recovered go first (forgetting them changes
// nothing), then arbitrary ones.
func NewMemoryLimiter(maxKeys int) *MemoryLimiter {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	m := &MemoryLimiter{seed: maphash.MakeSeed(), maxKeys: max(1, maxKeys/len(MemoryLimiter{}.shards))}
	for i := range m.shards {
		m.shards[i].tats = make(map[string][]time.Time)
	}
	return m
}

// Allow checks key against limits at now and, when every limit admits the request, counts it.
// It allocates only when it meets a new key.
func (m *MemoryLimiter) Allow(key []byte, limits []Limit, now time.Time) Decision {
	s := &m.shards[maphash.Bytes(m.seed, key)%uint64(len(m.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	tats, ok := s.tats[string(key)]
	fresh := !ok || len(tats) != len(limits) // a new key, or one whose limits changed on reload
	if fresh {
		tats = make([]time.Time, len(limits))
	}
	d, next := decide(tats, limits, now)
	if !d.Allowed {
		return d
	}
	if fresh {
		if !ok && len(s.tats) >= m.maxKeys {
			s.evict(now)
		}
		s.tats[string(key)] = next
	}
	return d
}

// Refund gives back one admitted request of key: each limit's arrival time moves back by one
// interval. A caller that admitted a request and then refused it for another reason (a plan's
// quota) refunds it, so the refused request consumes nothing.
func (m *MemoryLimiter) Refund(key []byte, limits []Limit) {
	s := &m.shards[maphash.Bytes(m.seed, key)%uint64(len(m.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	tats, ok := s.tats[string(key)]
	if !ok || len(tats) != len(limits) {
		return
	}
	for i, l := range limits {
		tats[i] = tats[i].Add(-l.interval()) // below now is the same as now
	}
}

// decide runs GCRA for every limit without committing; next holds the new arrival times when the
// request is admitted. It allocates only the returned slice, and reuses tats for it.
func decide(tats []time.Time, limits []Limit, now time.Time) (Decision, []time.Time) {
	d := Decision{Allowed: true, Remaining: math.MaxInt}
	var refuse Decision
	refused := false
	for i, l := range limits {
		t := l.interval()
		tol := l.tolerance()
		tat := tats[i]
		if tat.Before(now) {
			tat = now
		}
		newTAT := tat.Add(t)
		ahead := newTAT.Sub(now)
		if ahead > tol {
			retry := ahead - tol
			if !refused || retry > refuse.RetryAfter {
				refuse = Decision{Limit: i, RetryAfter: retry, Reset: tat.Sub(now)}
				refused = true
			}
			continue
		}
		remaining := int((tol - ahead) / t)
		if remaining < d.Remaining {
			d.Limit, d.Remaining, d.Reset = i, remaining, ahead
		}
	}
	if refused {
		return refuse, nil
	}
	for i, l := range limits {
		tat := tats[i]
		if tat.Before(now) {
			tat = now
		}
		tats[i] = tat.Add(l.interval())
	}
	return d, tats
}

// evict makes room in a full shard. It looks at a few entries only (a full scan per new key
// would let a client rotating keys burn CPU under the shard lock): a recovered one goes at once,
// otherwise the sampled one that recovers soonest.
func (s *limiterShard) evict(now time.Time) {
	const samples = 8
	var victim string
	var soonest time.Time
	n := 0
	for k, tats := range s.tats {
		latest := time.Time{}
		for _, t := range tats {
			if t.After(latest) {
				latest = t
			}
		}
		if !latest.After(now) {
			delete(s.tats, k)
			return
		}
		if n == 0 || latest.Before(soonest) {
			victim, soonest = k, latest
		}
		if n++; n == samples {
			break
		}
	}
	if n > 0 {
		delete(s.tats, victim)
	}
}

// Shards and Keys expose the tables to tests of the policies that use the limiter.
func (m *MemoryLimiter) Shards() int { return len(m.shards) }

// Keys returns the keys of shard i.
func (m *MemoryLimiter) Keys(i int) []string {
	s := &m.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tats))
	for k := range s.tats {
		out = append(out, k)
	}
	return out
}
