package state

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/limen-gateway/limen/internal/usage"
)

// usageScript applies one consumer's part of a batch once: the batch marker (per consumer, in
// the consumer's hash slot) is set only if absent, and only then are the counters increased.
// KEYS[1] = batch marker; then one hash per hour. ARGV: retention seconds, marker seconds, then
// for each hash the number of fields n followed by n field/increment pairs.
var usageScript = redis.NewScript(`
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[2])) == false then return 0 end
local a = 3
for i = 2, #KEYS do
  local n = tonumber(ARGV[a]); a = a + 1
  for j = 1, n do
    redis.call('HINCRBY', KEYS[i], ARGV[a], tonumber(ARGV[a + 1]))
    a = a + 2
  end
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[1]))
end
return 1
`)

// UsageStore keeps usage totals in Redis, shared by every node.
type UsageStore struct {
	r         *Redis
	retention time.Duration
	markerTTL time.Duration
}

// UsageStore returns the Redis usage store: totals kept for retention (default 35 days), batch
// markers for markerTTL, which must outlast the longest a batch can wait to be retried (default
// 2h; one marker per consumer per batch, so a day's worth would crowd Redis).
func (r *Redis) UsageStore(retention, markerTTL time.Duration) *UsageStore {
	if retention <= 0 {
		retention = 35 * 24 * time.Hour
	}
	if markerTTL <= 0 {
		markerTTL = 2 * time.Hour
	}
	return &UsageStore{r: r, retention: retention, markerTTL: markerTTL}
}

func (u *UsageStore) hourKey(consumer string, hour int64) string {
	return u.r.prefix + "usage:{" + hashTag(consumer) + "}:" + strconv.FormatInt(hour, 10)
}

func field(route, class, what string) string { return route + "\x1f" + class + "\x1f" + what }

// Apply adds a batch once, consumer by consumer (each in its own Cluster slot); a retried batch
// skips the consumers it already reached.
func (u *UsageStore) Apply(ctx context.Context, b usage.Batch) error {
	byConsumer := map[string]map[int64][]any{}
	for k, c := range b.Items {
		hours := byConsumer[k.Consumer]
		if hours == nil {
			hours = map[int64][]any{}
			byConsumer[k.Consumer] = hours
		}
		hours[k.Hour] = append(hours[k.Hour],
			field(k.Route, k.Class, "req"), c.Requests,
			field(k.Route, k.Class, "in"), c.BytesIn,
			field(k.Route, k.Class, "out"), c.BytesOut)
	}
	for consumer, hours := range byConsumer {
		keys := []string{u.r.prefix + "usage:{" + hashTag(consumer) + "}:batch:" + b.ID}
		args := []any{int64(u.retention / time.Second), int64(u.markerTTL / time.Second)}
		for hour, fields := range hours {
			keys = append(keys, u.hourKey(consumer, hour))
			args = append(args, len(fields)/2)
			args = append(args, fields...)
		}
		if !u.r.allow(time.Now()) {
			return ErrUnavailable
		}
		err := usageScript.Run(ctx, u.r.client, keys, args...).Err()
		u.r.result(err)
		if err != nil {
			return err
		}
		if err := u.r.client.SAdd(ctx, u.r.prefix+"usage:consumers", consumer).Err(); err != nil {
			return err
		}
	}
	return nil
}

// Query reads the totals of consumer ("" for every consumer) in [from, to). It reads every
// (consumer, hour) hash in pipelines of up to queryBatch commands, on the bulk client: an export
// over months and thousands of consumers is a few round trips per thousand hours, none of them
// bound by the request path's short timeout.
func (u *UsageStore) Query(ctx context.Context, consumer string, from, to time.Time) (map[usage.Key]usage.Counts, error) {
	consumers := []string{consumer}
	if consumer == "" {
		var err error
		if consumers, err = u.r.bulk.SMembers(ctx, u.r.prefix+"usage:consumers").Result(); err != nil {
			return nil, err
		}
	}
	out := map[usage.Key]usage.Counts{}
	start := from.Unix() - from.Unix()%3600
	var batch []hourRead
	for _, c := range consumers {
		for h := start; h < to.Unix(); h += 3600 {
			batch = append(batch, hourRead{consumer: c, hour: h})
			if len(batch) == queryBatch {
				if err := u.readHours(ctx, batch, out); err != nil {
					return nil, err
				}
				batch = batch[:0]
			}
		}
	}
	if err := u.readHours(ctx, batch, out); err != nil {
		return nil, err
	}
	return out, nil
}

// queryBatch is how many hour hashes one pipeline reads.
const queryBatch = 1000

type hourRead struct {
	consumer string
	hour     int64
}

// readHours adds the hours in batch to out, in one pipeline.
func (u *UsageStore) readHours(ctx context.Context, batch []hourRead, out map[usage.Key]usage.Counts) error {
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := u.r.bound(ctx, bulkTimeout)
	defer cancel()
	pipe := u.r.bulk.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(batch))
	for i, b := range batch {
		cmds[i] = pipe.HGetAll(ctx, u.hourKey(b.consumer, b.hour))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return err
	}
	for i, cmd := range cmds {
		for f, v := range cmd.Val() {
			parts := strings.Split(f, "\x1f")
			if len(parts) != 3 {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			k := usage.Key{Consumer: batch[i].consumer, Route: parts[0], Class: parts[1], Hour: batch[i].hour}
			cur := out[k]
			switch parts[2] {
			case "req":
				cur.Requests += n
			case "in":
				cur.BytesIn += n
			case "out":
				cur.BytesOut += n
			}
			out[k] = cur
		}
	}
	return nil
}
