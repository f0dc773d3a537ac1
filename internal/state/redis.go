package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is what a Redis-backed capability returns while Redis is unreachable (its
// breaker is open): callers apply their on_error at once instead of waiting on a timeout.
var ErrUnavailable = errors.New("shared state (redis) is unavailable")

// RedisOptions configure the Redis backend.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db or rediss:// for TLS; with Cluster, the seed
	// nodes, more of them in addr= query parameters.
	URL string
	// Cluster uses the Redis Cluster protocol.
	Cluster bool
	// PoolSize bounds connections (default 10 per CPU, go-redis's default).
	PoolSize int
	// Timeout bounds each command, dial included: a request never waits on Redis longer.
	Timeout time.Duration
	// KeyPrefix starts every key ("limen:").
	KeyPrefix string
	// Failures in a row open the breaker; OpenFor is how long it stays open before one probe.
	Failures int
	OpenFor  time.Duration
	Log      *slog.Logger
}

// Redis is the shared-state engine for several nodes. It lives in the Pool, keyed by its
// options, so reloads keep its connections.
type Redis struct {
	client redis.UniversalClient
	// bulk has a longer timeout, for reads that are not on a request's path (usage exports),
	// whose replies may take longer than a request may wait. A single node's bulk client
	// shares client's connections.
	bulk   redis.UniversalClient
	prefix string
	log    *slog.Logger
	// timeout, in cluster mode, also bounds each operation as a whole: a cluster client
	// retries timeouts, CLUSTERDOWN and TRYAGAIN up to MaxRedirects times whatever MaxRetries
	// says, and a retried script would count one request twice.
	timeout time.Duration
	cluster bool

	failures int
	openFor  time.Duration
	// healthy is true while no failure is pending: the common case reads it and takes no lock,
	// so requests do not queue on one mutex.
	healthy  atomic.Bool
	mu       sync.Mutex
	fails    int
	openTill time.Time
	down     bool // an outage is in progress (logged once)
	errors   atomic.Uint64
}

// NewRedis connects lazily: a Redis that is down at start-up makes its users apply on_error
// until it answers.
func NewRedis(o RedisOptions) (*Redis, error) {
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.Failures <= 0 {
		o.Failures = 3
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &Redis{prefix: o.KeyPrefix, log: o.Log, failures: o.Failures, openFor: o.OpenFor, timeout: o.Timeout, cluster: o.Cluster}
	if o.Cluster {
		cluster := func(timeout time.Duration, pool int) (*redis.ClusterClient, error) {
			opt, err := redis.ParseClusterURL(o.URL)
			if err != nil {
				return nil, fmt.Errorf("redis cluster url: %w", err)
			}
			opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = o.Timeout, timeout, timeout
			opt.ContextTimeoutEnabled = true
			if pool > 0 {
				opt.PoolSize = pool
			}
			return redis.NewClusterClient(opt), nil
		}
		client, err := cluster(o.Timeout, o.PoolSize)
		if err != nil {
			return nil, err
		}
		// A cluster client has no WithTimeout: exports get their own small pool per node.
		bulk, _ := cluster(bulkTimeout, 2)
		r.client, r.bulk = client, bulk
	} else {
		opt, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
		opt.ContextTimeoutEnabled = true
		opt.MaxRetries = -1 // a retry doubles the wait; the breaker and on_error decide instead
		if o.PoolSize > 0 {
			opt.PoolSize = o.PoolSize
		}
		client := redis.NewClient(opt)
		r.client, r.bulk = client, client.WithTimeout(bulkTimeout)
	}
	r.healthy.Store(true)
	return r, nil
}

// bound limits one operation (a command, a script, a pipeline) to d in cluster mode; see
// Redis.timeout. A single node's client never retries, and its per-command timeouts suffice.
func (r *Redis) bound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if !r.cluster {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// bulkTimeout bounds one bulk command or pipeline.
const bulkTimeout = 10 * time.Second

// Close closes the connections.
func (r *Redis) Close() error {
	err := r.client.Close()
	if _, shared := r.client.(*redis.Client); !shared {
		err = errors.Join(err, r.bulk.Close())
	}
	return err
}

// Errors counts failed commands since start, for metrics.
func (r *Redis) Errors() uint64 { return r.errors.Load() }

// allow reports whether a command may be sent now: false while the breaker is open. After
// open_for one caller probes; its result closes or reopens the breaker.
func (r *Redis) allow(now time.Time) bool {
	if r.healthy.Load() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Before(r.openTill) {
		return false
	}
	if r.fails >= r.failures {
		r.openTill = now.Add(r.openFor) // this caller is the probe; others wait for its result
	}
	return true
}

func (r *Redis) result(err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away: says nothing about Redis
	}
	if err == nil && r.healthy.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.healthy.Store(true)
		if r.down {
			r.log.Info("redis is back; shared state in use again")
		}
		r.fails, r.openTill, r.down = 0, time.Time{}, false
		return
	}
	r.errors.Add(1)
	r.healthy.Store(false)
	r.fails++
	if r.fails >= r.failures {
		r.openTill = time.Now().Add(r.openFor)
		if !r.down {
			r.down = true
			r.log.Warn("redis unavailable; policies apply their on_error until it answers", "err", err)
		}
	}
}

// limiterScript runs GCRA for every limit of one key in one round trip, on Redis's clock (TIME)
// so nodes with drifting clocks agree. It checks every limit before committing any: a refused
// request consumes nothing. The key is a hash with one field per limit; it expires when every
// limit has recovered.
//
// ARGV: n, then interval and tolerance (microseconds) for each limit.
// Returns {allowed, limit index, remaining or 0, reset µs, retry-after µs}.
var limiterScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local tats = redis.call('HMGET', KEYS[1], unpack((function() local f = {} for i = 1, n do f[i] = tostring(i) end return f end)()))
local best, bestRemaining, bestReset = 0, -1, 0
local refused, refuseRetry, refuseReset = 0, -1, 0
local new = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(tats[i]) or now
  if tat < now then tat = now end
  local newTat = tat + interval
  local ahead = newTat - now
  if ahead > tolerance then
    local retry = ahead - tolerance
    if refused == 0 or retry > refuseRetry then
      refused, refuseRetry, refuseReset = i, retry, tat - now
    end
  else
    local remaining = math.floor((tolerance - ahead) / interval)
    if bestRemaining < 0 or remaining < bestRemaining then
      best, bestRemaining, bestReset = i, remaining, ahead
    end
  end
  new[i] = newTat
end
if refused > 0 then
  return {0, refused - 1, 0, refuseReset, refuseRetry}
end
local ttl = 0
local args = {}
for i = 1, n do
  args[#args + 1] = tostring(i)
  args[#args + 1] = string.format('%.0f', new[i])
  if new[i] - now > ttl then ttl = new[i] - now end
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl / 1000) + 1000)
return {1, best - 1, bestRemaining, bestReset, 0}
`)

// refundScript moves each limit's arrival time of one key back by its interval (ARGV: n, then
// the intervals in microseconds): RedisLimiter.Refund.
var refundScript = redis.NewScript(`
local n = tonumber(ARGV[1])
for i = 1, n do
  local tat = tonumber(redis.call('HGET', KEYS[1], tostring(i)))
  if tat then
    redis.call('HSET', KEYS[1], tostring(i), string.format('%.0f', tat - tonumber(ARGV[i + 1])))
  end
end
return 1
`)

// RedisLimiter is a Limiter whose state is in Redis, shared by every node: one round trip per
// request.
type RedisLimiter struct {
	r      *Redis
	prefix string // key prefix for this limiter: <prefix>rl:{<instance>:
}

// Limiter returns a limiter whose keys are namespaced by name (the policy instance and key
// spec; never a config hash, so nodes in the middle of a rollout count in the same keys).
func (r *Redis) Limiter(name string) *RedisLimiter {
	return &RedisLimiter{r: r, prefix: r.prefix + "rl:" + name + ":"}
}

// Refund is MemoryLimiter.Refund in Redis: one round trip, paid only by requests admitted by
// the limits and refused afterwards.
func (l *RedisLimiter) Refund(ctx context.Context, key []byte, limits []Limit) error {
	if !l.r.allow(time.Now()) {
		return ErrUnavailable
	}
	args := make([]any, 0, 1+len(limits))
	args = append(args, len(limits))
	for _, lim := range limits {
		args = append(args, max(lim.interval().Microseconds(), 1))
	}
	ctx, cancel := l.r.bound(ctx, l.r.timeout)
	defer cancel()
	err := refundScript.Run(ctx, l.r.client, []string{l.key(key)}, args...).Err()
	l.r.result(err)
	return err
}

// key is the Redis key of a limiter key; the hash tag keeps its data on one Cluster slot.
func (l *RedisLimiter) key(key []byte) string { return l.prefix + "{" + hashTag(string(key)) + "}" }

// Allow checks key against limits in Redis. It returns ErrUnavailable, without waiting, while
// the breaker is open, and the command's error when Redis fails.
func (l *RedisLimiter) Allow(ctx context.Context, key []byte, limits []Limit) (Decision, error) {
	if !l.r.allow(time.Now()) {
		return Decision{}, ErrUnavailable
	}
	k := l.key(key)
	args := make([]any, 0, 1+2*len(limits))
	args = append(args, len(limits))
	for _, lim := range limits {
		// Redis's clock has microseconds: rates above a million per second round to that.
		iv := max(lim.interval().Microseconds(), 1)
		args = append(args, iv, max(lim.tolerance().Microseconds(), iv))
	}
	ctx, cancel := l.r.bound(ctx, l.r.timeout)
	defer cancel()
	res, err := limiterScript.Run(ctx, l.r.client, []string{k}, args...).Int64Slice()
	l.r.result(err)
	if err != nil {
		return Decision{}, err
	}
	if len(res) != 5 {
		return Decision{}, fmt.Errorf("redis limiter: unexpected reply of %d values", len(res))
	}
	return Decision{
		Allowed: res[0] == 1, Limit: int(res[1]), Remaining: int(res[2]),
		Reset: time.Duration(res[3]) * time.Microsecond, RetryAfter: time.Duration(res[4]) * time.Microsecond,
	}, nil
}

// Ping checks the connection (tests and readiness).
func (r *Redis) Ping(ctx context.Context) error { return r.client.Ping(ctx).Err() }

// hashTag is a key part safe inside a Redis Cluster hash tag: a part with braces (or an empty
// one) would end the tag early, and Redis would then hash the whole key, scattering one
// consumer's keys over slots. Such parts are replaced by their digest.
func hashTag(part string) string {
	if part != "" && !strings.ContainsAny(part, "{}") {
		return part
	}
	sum := sha256.Sum256([]byte(part))
	return "h" + hex.EncodeToString(sum[:12])
}
