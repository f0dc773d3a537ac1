package state

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/limen-gateway/limen/internal/redistest"
	"github.com/limen-gateway/limen/internal/usage"
)

// TestRedisCluster runs every Redis-backed capability against a real three-master Redis Cluster,
// with keys spread over all its slots: each script's keys share a hash tag, so none fails with
// CROSSSLOT, and two gateway nodes (two clients) share the limits, quotas and usage totals.
func TestRedisCluster(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	url := redistest.ClusterURL(nodes)
	open := func() *Redis {
		r, err := NewRedis(RedisOptions{URL: url, Cluster: true, KeyPrefix: "test:", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	a, b := open(), open()
	ctx := context.Background()
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("consumer-%d", i)
	}

	t.Run("limiter", func(t *testing.T) {
		la, lb := a.Limiter("c"), b.Limiter("c")
		limits := []Limit{{Requests: 5, Per: time.Hour, Burst: 5}, {Requests: 1000, Per: time.Second, Burst: 1000}}
		for _, k := range keys {
			admitted := 0
			for i := range 10 {
				l := la
				if i%2 == 1 {
					l = lb
				}
				d, err := l.Allow(ctx, []byte(k), limits)
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				if d.Allowed {
					admitted++
				}
			}
			if admitted != 5 {
				t.Fatalf("%s: two nodes admitted %d of 10 against a limit of 5", k, admitted)
			}
		}
	})

	t.Run("quotas", func(t *testing.T) {
		qa, qb := a.Quotas("c"), b.Quotas("c")
		quotas := []Quota{{Requests: 3, Period: "day"}, {Requests: 100, Period: "month"}}
		now := time.Now()
		for _, k := range keys {
			admitted := 0
			for i := range 6 {
				q := qa
				if i%2 == 1 {
					q = qb
				}
				d, err := q.Take(ctx, k, quotas, now)
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
				if d.Allowed {
					admitted++
				}
			}
			if admitted != 3 {
				t.Fatalf("%s: two nodes admitted %d of 6 against a daily quota of 3", k, admitted)
			}
		}
	})

	t.Run("usage", func(t *testing.T) {
		hour := time.Now().Unix() - time.Now().Unix()%3600
		items := map[usage.Key]usage.Counts{}
		for i, k := range keys {
			items[usage.Key{Consumer: k, Route: "orders", Class: "2xx", Hour: hour}] = usage.Counts{Requests: int64(i + 1), BytesOut: 10}
		}
		batch := usage.Batch{ID: "cluster-1", Items: items}
		for range 2 { // a retried flush, possibly from the other node
			if err := a.UsageStore(0, 0).Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if err := b.UsageStore(0, 0).Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		got, err := b.UsageStore(0, 0).Query(ctx, "", time.Unix(hour, 0), time.Unix(hour, 0).Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(items) {
			t.Fatalf("%d usage rows, want %d", len(got), len(items))
		}
		for k, c := range items {
			if got[k] != c {
				t.Errorf("%s: %+v, want %+v", k.Consumer, got[k], c)
			}
		}
	})

	t.Run("store", func(t *testing.T) {
		sa, sb := a.Store("c", 0), b.Store("c", 0)
		for _, k := range keys {
			if err := sa.Set(ctx, k, []byte("v-"+k), time.Minute); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := sb.Get(ctx, k); err != nil || !ok || string(v) != "v-"+k {
				t.Fatalf("%s: %q %v %v", k, v, ok, err)
			}
			if ok, err := sb.SetNX(ctx, k, []byte("other"), time.Minute); err != nil || ok {
				t.Fatalf("%s: SetNX over an existing key: %v %v", k, ok, err)
			}
			if err := sb.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	})

	// The keys really were spread: every master holds some.
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		size, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil || size == 0 {
			t.Errorf("node %s holds %d keys (%v): the test did not spread over the cluster", n.Addr, size, err)
		}
	}
}

// TestRedisClusterStallSendsOnce: a cluster client retries a timed-out command on its own (up
// to MaxRedirects times, whatever MaxRetries says), waiting several timeouts and re-sending
// scripts that may already have counted. With every master stalled, a quota Take must give up
// after one attempt, within the operation's timeout.
func TestRedisClusterStallSendsOnce(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	r, err := NewRedis(RedisOptions{URL: redistest.ClusterURL(nodes), Cluster: true, KeyPrefix: "test:",
		Timeout: 100 * time.Millisecond, Failures: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	q := r.Quotas("stall")
	quotas := []Quota{{Requests: 5, Period: "day"}}
	ctx := context.Background()
	now := time.Now()
	if d, err := q.Take(ctx, "acme", quotas, now); err != nil || !d.Allowed { // learns the slot map
		t.Fatalf("first take: %+v %v", d, err)
	}
	// Several idle pooled connections to acme's node, as under load: each retry takes one and
	// sends the script at once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = r.Quotas("warm").Take(ctx, "acme", quotas, now)
		}()
	}
	wg.Wait()
	before := scriptAttempts(t, nodes)
	for _, n := range nodes {
		n.Freeze()
	}
	_, err = q.Take(ctx, "acme", quotas, now)
	time.Sleep(time.Second) // longer than every retry the client could make
	for _, n := range nodes {
		n.Thaw()
	}
	if err == nil {
		t.Fatal("a take against stalled masters succeeded")
	}
	time.Sleep(200 * time.Millisecond) // the masters run what was queued while they were stopped
	if n := scriptAttempts(t, nodes) - before; n != 1 {
		t.Fatalf("the stalled take sent its script %d times, want once", n)
	}
}

// scriptAttempts sums, over the nodes, the script calls each received: executed or redirected.
func scriptAttempts(t *testing.T, nodes []*redistest.Server) int {
	t.Helper()
	total := 0
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		info, err := c.Info(context.Background(), "commandstats").Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
				continue
			}
			for _, kv := range strings.Split(line[strings.IndexByte(line, ':')+1:], ",") {
				k, v, _ := strings.Cut(kv, "=")
				if k == "calls" || k == "rejected_calls" {
					x, _ := strconv.Atoi(v)
					total += x
				}
			}
		}
	}
	return total
}
