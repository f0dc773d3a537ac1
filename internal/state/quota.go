package state

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Quota is a calendar budget: Requests per day or month, in a time zone.
type Quota struct {
	Requests int
	Period   string // day or month
	Location *time.Location
}

// Window returns the calendar period containing now: [start, end). In zones where a DST change
// happens at midnight the local midnight does not exist; the window is then stepped until it
// contains now, so a reset time is never in the past.
func (q Quota) Window(now time.Time) (start, end time.Time) {
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	t := now.In(loc)
	if q.Period == "month" {
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
		end = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
	} else {
		start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		end = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
	}
	for i := 0; !now.Before(end) && i < 3; i++ {
		end = end.Add(time.Hour)
	}
	return start, end
}

// QuotaDecision is the outcome of taking one request from several quotas.
type QuotaDecision struct {
	Allowed bool
	// Quota is the index of the quota that refused, or when allowed the one with the least left.
	Quota     int
	Remaining int
	// Reset is when that quota's period ends.
	Reset time.Time
}

// MemoryQuotas counts quotas in this process, in sharded tables. Counters of past periods are
// dropped; counters of the current period are never dropped to make room (that would hand a
// consumer its used quota back), so the tables are bounded by the consumers that actually call.
type MemoryQuotas struct {
	shards  [32]quotaShard
	seed    maphash.Seed
	maxKeys int // per shard, before past periods are swept
}

type quotaShard struct {
	mu     sync.Mutex
	counts map[string]quotaCount
	swept  time.Time
}

type quotaCount struct {
	n   int
	end time.Time
}

// NewMemoryQuotas sweeps past periods once a shard holds more than maxKeys/32 counters
// (100,000 in all when <= 0).
func NewMemoryQuotas(maxKeys int) *MemoryQuotas {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	m := &MemoryQuotas{seed: maphash.MakeSeed(), maxKeys: max(1, maxKeys/32)}
	for i := range m.shards {
		m.shards[i].counts = map[string]quotaCount{}
	}
	return m
}

func quotaKey(key string, q Quota, i int, start time.Time) string {
	return key + "\x1f" + q.Period + "\x1f" + strconv.Itoa(i) + "\x1f" + strconv.FormatInt(start.Unix(), 10)
}

// Take checks every quota for key and, when all have room, counts the request in each.
func (m *MemoryQuotas) Take(key string, quotas []Quota, now time.Time) QuotaDecision {
	s := &m.shards[maphash.String(m.seed, key)%uint64(len(m.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	d := QuotaDecision{Allowed: true, Remaining: -1}
	keys := make([]string, len(quotas))
	ends := make([]time.Time, len(quotas))
	var refused *QuotaDecision
	for i, q := range quotas {
		start, end := q.Window(now)
		keys[i], ends[i] = quotaKey(key, q, i, start), end
		left := q.Requests - s.counts[keys[i]].n
		if left <= 0 {
			// Several exhausted quotas: the caller must wait for the last of them to reset.
			if refused == nil || end.After(refused.Reset) {
				refused = &QuotaDecision{Quota: i, Reset: end}
			}
			continue
		}
		if d.Remaining < 0 || left-1 < d.Remaining {
			d.Quota, d.Remaining, d.Reset = i, left-1, end
		}
	}
	if refused != nil {
		return *refused
	}
	if len(s.counts) >= m.maxKeys && now.Sub(s.swept) > time.Minute {
		s.swept = now
		for k, c := range s.counts {
			if !now.Before(c.end) {
				delete(s.counts, k)
			}
		}
	}
	for i, k := range keys {
		c := s.counts[k]
		c.n++
		c.end = ends[i]
		s.counts[k] = c
	}
	return d
}

// quotaScript checks every quota counter, and only when all have room increments them all and
// sets each to expire a day after its period ends. KEYS: one counter per quota. ARGV: the limit
// and expiry (unix seconds) of each. Returns {allowed, index, remaining}; when refused, index is
// the exhausted quota that resets last (the expiries order the period ends), so Retry-After is
// never a time at which the request would still be refused.
var quotaScript = redis.NewScript(`
local best, bestLeft = 0, -1
local refused, refusedUntil = 0, -1
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  local left = tonumber(ARGV[2 * i - 1]) - used
  if left <= 0 then
    local untilTs = tonumber(ARGV[2 * i])
    if untilTs > refusedUntil then refused, refusedUntil = i, untilTs end
  elseif bestLeft < 0 or left - 1 < bestLeft then
    best, bestLeft = i, left - 1
  end
end
if refused > 0 then return {0, refused - 1, 0} end
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[2 * i]))
end
return {1, best - 1, bestLeft}
`)

// RedisQuotas counts quotas in Redis, shared by every node.
type RedisQuotas struct {
	r      *Redis
	prefix string
}

// Quotas returns a quota counter namespaced by name.
func (r *Redis) Quotas(name string) *RedisQuotas {
	return &RedisQuotas{r: r, prefix: r.prefix + "q:" + name + ":"}
}

// Take is MemoryQuotas.Take in Redis: one round trip, every counter of a key on one Cluster slot.
func (q *RedisQuotas) Take(ctx context.Context, key string, quotas []Quota, now time.Time) (QuotaDecision, error) {
	if !q.r.allow(time.Now()) {
		return QuotaDecision{}, ErrUnavailable
	}
	keys := make([]string, len(quotas))
	args := make([]any, 0, 2*len(quotas))
	ends := make([]time.Time, len(quotas))
	for i, qu := range quotas {
		start, end := qu.Window(now)
		ends[i] = end
		keys[i] = q.prefix + "{" + hashTag(key) + "}:" + qu.Period + ":" + strconv.Itoa(i) + ":" + strconv.FormatInt(start.Unix(), 10)
		args = append(args, qu.Requests, end.Add(24*time.Hour).Unix())
	}
	ctx, cancel := q.r.bound(ctx, q.r.timeout)
	defer cancel()
	res, err := quotaScript.Run(ctx, q.r.client, keys, args...).Int64Slice()
	q.r.result(err)
	if err != nil {
		return QuotaDecision{}, err
	}
	if len(res) != 3 || int(res[1]) >= len(quotas) || res[1] < 0 {
		return QuotaDecision{}, fmt.Errorf("redis quotas: unexpected reply %v", res)
	}
	return QuotaDecision{Allowed: res[0] == 1, Quota: int(res[1]), Remaining: int(res[2]), Reset: ends[res[1]]}, nil
}

// Plan is a usage plan as policies see it: per-consumer rates and calendar quotas.
type Plan struct {
	Name   string
	Limits []Limit
	Quotas []Quota
}
