package state

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/redistest"
)

// startRedis runs a private redis-server for the test.
func startRedis(t testing.TB) (addr string, stop func()) {
	s := redistest.Start(t)
	return s.Addr, s.Stop
}

func newRedis(t testing.TB, addr string) *Redis {
	t.Helper()
	r, err := NewRedis(RedisOptions{URL: "redis://" + addr + "/0", KeyPrefix: "test:", OpenFor: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisLimiterSharedByNodes(t *testing.T) {
	addr, _ := startRedis(t)
	// Three nodes, each with its own connection pool, share one budget.
	nodes := []*RedisLimiter{newRedis(t, addr).Limiter("p"), newRedis(t, addr).Limiter("p"), newRedis(t, addr).Limiter("p")}
	limits := []Limit{{Requests: 100, Per: time.Hour, Burst: 100}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				d, err := n.Allow(context.Background(), []byte("client-1"), limits)
				if err != nil {
					t.Errorf("node %d: %v", i, err)
					return
				}
				if d.Allowed {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if admitted != 100 {
		t.Fatalf("3 nodes admitted %d of 300 requests against a shared limit of 100", admitted)
	}
}

func TestRedisRefusedConsumesNothing(t *testing.T) {
	addr, _ := startRedis(t)
	l := newRedis(t, addr).Limiter("p")
	limits := []Limit{{Requests: 100, Per: time.Second, Burst: 100}, {Requests: 2, Per: time.Hour, Burst: 2}}
	for i := range 2 {
		if d, err := l.Allow(context.Background(), []byte("k"), limits); err != nil || !d.Allowed || d.Limit != 1 || d.Remaining != 1-i {
			t.Fatalf("request %d: %+v %v", i, d, err)
		}
	}
	for range 20 {
		d, err := l.Allow(context.Background(), []byte("k"), limits)
		if err != nil || d.Allowed || d.Limit != 1 || d.RetryAfter <= 0 {
			t.Fatalf("over the hourly limit: %+v %v", d, err)
		}
	}
	// The per-second limit's arrival time moved by two intervals only (10ms each): refused
	// requests were not counted.
	vals, err := l.r.client.HMGet(context.Background(), "test:rl:p:{k}", "1", "2").Result()
	if err != nil || len(vals) != 2 {
		t.Fatalf("%v %v", vals, err)
	}
	first, _ := strconv.ParseInt(vals[0].(string), 10, 64)
	now, _ := l.r.client.Time(context.Background()).Result()
	if ahead := time.Duration(first-now.UnixMicro()) * time.Microsecond; ahead > 20*time.Millisecond {
		t.Errorf("the per-second limit is %v ahead after 2 admitted and 20 refused requests: refused ones were counted", ahead)
	}
	ttl, _ := l.r.client.PTTL(context.Background(), "test:rl:p:{k}").Result()
	if ttl <= 0 || ttl > 2*time.Hour {
		t.Errorf("the key expires in %v: it must expire once every limit recovered", ttl)
	}
}

func TestRedisDownOpensBreaker(t *testing.T) {
	addr, stop := startRedis(t)
	r := newRedis(t, addr)
	l := r.Limiter("p")
	limits := []Limit{{Requests: 10, Per: time.Second, Burst: 10}}
	if _, err := l.Allow(context.Background(), []byte("k"), limits); err != nil {
		t.Fatal(err)
	}
	stop()
	var lastErr error
	for range 5 {
		_, lastErr = l.Allow(context.Background(), []byte("k"), limits)
	}
	if lastErr != ErrUnavailable {
		t.Fatalf("after repeated failures: %v, want ErrUnavailable without waiting", lastErr)
	}
	if r.Errors() < 3 {
		t.Errorf("%d errors counted", r.Errors())
	}
}

func TestRedisRecovers(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedis(t, srv.Addr)
	l := r.Limiter("p")
	limits := []Limit{{Requests: 10, Per: time.Second, Burst: 10}}
	srv.Stop()
	for range 5 {
		l.Allow(context.Background(), []byte("k"), limits)
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := l.Allow(context.Background(), []byte("k"), limits)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never recovered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkRedisAllow is one round trip to a local redis-server per request, two limits.
func BenchmarkRedisAllow(b *testing.B) {
	addr, _ := startRedis(b)
	r := newRedis(b, addr)
	lim := r.Limiter("bench")
	limits := []Limit{{Requests: 1 << 30, Per: time.Second, Burst: 1 << 30}, {Requests: 1 << 30, Per: time.Hour, Burst: 1 << 30}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := lim.Allow(context.Background(), []byte("203.0.113.7"), limits); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCancelledCallsDoNotOpenTheBreaker: clients that hang up are not Redis failures.
func TestCancelledCallsDoNotOpenTheBreaker(t *testing.T) {
	addr, _ := startRedis(t)
	r := newRedis(t, addr)
	l := r.Limiter("p")
	limits := []Limit{{Requests: 10, Per: time.Second, Burst: 10}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		_, _ = l.Allow(ctx, []byte("k"), limits)
	}
	if _, err := l.Allow(context.Background(), []byte("k"), limits); err != nil || r.Errors() != 0 {
		t.Fatalf("after cancelled calls: %v, %d errors counted", err, r.Errors())
	}
}

// TestLimiterRefund: a refunded request is given back to every limit of its key, in memory and
// in Redis alike, and refunding an unknown key changes nothing.
func TestLimiterRefund(t *testing.T) {
	addr, _ := startRedis(t)
	limits := []Limit{{Requests: 2, Per: time.Hour, Burst: 2}, {Requests: 100, Per: time.Second, Burst: 100}}
	mem, red := NewMemoryLimiter(0), newRedis(t, addr).Limiter("refund")
	ctx := context.Background()
	now := time.Now()
	type ops struct {
		allow  func() (Decision, error)
		refund func() error
	}
	for name, o := range map[string]ops{
		"memory": {func() (Decision, error) { return mem.Allow([]byte("k"), limits, now), nil },
			func() error { mem.Refund([]byte("k"), limits); return nil }},
		"redis": {func() (Decision, error) { return red.Allow(ctx, []byte("k"), limits) },
			func() error { return red.Refund(ctx, []byte("k"), limits) }},
	} {
		var got []bool
		step := func() {
			d, err := o.allow()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, d.Allowed)
		}
		step()
		step()
		if err := o.refund(); err != nil {
			t.Fatal(err)
		}
		step()
		step()
		if want := []bool{true, true, true, false}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: allow, allow, refund, allow, allow = %v, want %v", name, got, want)
		}
	}
	mem.Refund([]byte("unknown"), limits)
	if err := red.Refund(ctx, []byte("unknown"), limits); err != nil {
		t.Fatal(err)
	}
}
