package state

import (
	"context"
	"fmt"
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

// Window returns the calendar period containing now: [start, end).
func (q Quota) Window(now time.Time) (start, end time.Time) {
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	t := now.In(loc)
	if q.Period == "month" {
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
		return start, start.AddDate(0, 1, 0)
	}
	start = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	return start, start.AddDate(0, 0, 1)
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

// MemoryQuotas counts quotas in this process, bounded like the limiter's tables.
type MemoryQuotas struct {
	mu      sync.Mutex
	counts  map[string]int // key + "\\x1f" + quota index + "\\x1f" + window start
	maxKeys int
}

// NewMemoryQuotas tracks at most maxKeys counters (100,000 when <= 0).
func NewMemoryQuotas(maxKeys int) *MemoryQuotas {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	return &MemoryQuotas{counts: map[string]int{}, maxKeys: maxKeys}
}

func quotaKey(key string, i int, start time.Time) string {
	return key + "\x1f" + strconv.Itoa(i) + "\x1f" + strconv.FormatInt(start.Unix(), 10)
}

// Take checks every quota for key and, when all have room, counts the request in each.
func (m *MemoryQuotas) Take(key string, quotas []Quota, now time.Time) QuotaDecision {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := QuotaDecision{Allowed: true, Remaining: -1}
	keys := make([]string, len(quotas))
	for i, q := range quotas {
		start, end := q.Window(now)
		keys[i] = quotaKey(key, i, start)
		left := q.Requests - m.counts[keys[i]]
		if left <= 0 {
			return QuotaDecision{Quota: i, Reset: end}
		}
		if d.Remaining < 0 || left-1 < d.Remaining {
			d.Quota, d.Remaining, d.Reset = i, left-1, end
		}
	}
	if len(m.counts)+len(keys) > m.maxKeys {
		m.evictOld(now, quotas)
	}
	for _, k := range keys {
		m.counts[k]++
	}
	return d
}

// evictOld drops counters of past periods, then arbitrary ones if that is not enough.
func (m *MemoryQuotas) evictOld(now time.Time, quotas []Quota) {
	current := map[string]bool{}
	for i, q := range quotas {
		start, _ := q.Window(now)
		current["\x1f"+strconv.Itoa(i)+"\x1f"+strconv.FormatInt(start.Unix(), 10)] = true
	}
	for k := range m.counts {
		keep := false
		for suffix := range current {
			if len(k) >= len(suffix) && k[len(k)-len(suffix):] == suffix {
				keep = true
				break
			}
		}
		if !keep {
			delete(m.counts, k)
		}
	}
	for k := range m.counts {
		if len(m.counts) < m.maxKeys {
			break
		}
		delete(m.counts, k)
	}
}

// quotaScript checks every quota counter, and only when all have room increments them all and
// sets each to expire a day after its period ends. KEYS: one counter per quota. ARGV: the limit
// and expiry (unix seconds) of each. Returns {allowed, index, remaining}.
var quotaScript = redis.NewScript(`
local best, bestLeft = 0, -1
for i = 1, #KEYS do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  local left = tonumber(ARGV[2 * i - 1]) - used
  if left <= 0 then return {0, i - 1, 0} end
  if bestLeft < 0 or left - 1 < bestLeft then best, bestLeft = i, left - 1 end
end
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
		keys[i] = q.prefix + "{" + key + "}:" + strconv.Itoa(i) + ":" + strconv.FormatInt(start.Unix(), 10)
		args = append(args, qu.Requests, end.Add(24*time.Hour).Unix())
	}
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
