package state

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestGCRA(t *testing.T) {
	t.Parallel()
	m := NewMemoryLimiter(0)
	now := time.Unix(1_000_000, 0)
	perSecond := []Limit{{Requests: 10, Per: time.Second, Burst: 10}}
	key := []byte("k")
	// A full burst, then refusal.
	for i := range 10 {
		d := m.Allow(key, perSecond, now)
		if !d.Allowed || d.Remaining != 9-i {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := m.Allow(key, perSecond, now)
	if d.Allowed || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("11th request: %+v, want refused with 100ms to wait", d)
	}
	// One interval later exactly one more request fits: a smooth rate, no window edge.
	now = now.Add(100 * time.Millisecond)
	if !m.Allow(key, perSecond, now).Allowed || m.Allow(key, perSecond, now).Allowed {
		t.Fatal("after one interval, want exactly one more request")
	}
	// Over any one-second span at most burst + rate requests pass (no 2x at a boundary).
	m2 := NewMemoryLimiter(0)
	start := time.Unix(2_000_000, 0)
	passed := 0
	for ms := 0; ms < 1000; ms++ {
		for range 5 {
			if m2.Allow(key, perSecond, start.Add(time.Duration(ms)*time.Millisecond)).Allowed {
				passed++
			}
		}
	}
	if passed > 20 || passed < 19 {
		t.Fatalf("%d requests passed in one second at 10/s with burst 10", passed)
	}
}

// TestRefusedConsumesNothing: with two limits, a request the second refuses does not use up the
// first.
func TestRefusedConsumesNothing(t *testing.T) {
	t.Parallel()
	m := NewMemoryLimiter(0)
	now := time.Unix(1_000_000, 0)
	limits := []Limit{{Requests: 100, Per: time.Second, Burst: 100}, {Requests: 2, Per: time.Hour, Burst: 2}}
	key := []byte("k")
	for range 2 {
		if !m.Allow(key, limits, now).Allowed {
			t.Fatal("refused within both limits")
		}
	}
	for range 50 {
		d := m.Allow(key, limits, now)
		if d.Allowed || d.Limit != 1 {
			t.Fatalf("want refusal by the hourly limit: %+v", d)
		}
	}
	// The per-second limit counted only the two admitted requests.
	var tats []time.Time
	for i := range m.shards {
		if v, ok := m.shards[i].tats["k"]; ok {
			tats = v
		}
	}
	if want := now.Add(2 * limits[0].interval()); !tats[0].Equal(want) {
		t.Fatalf("per-second state %v, want %v: refused requests were counted", tats[0], want)
	}
}

func TestDecisionPicksTightestLimit(t *testing.T) {
	t.Parallel()
	m := NewMemoryLimiter(0)
	now := time.Unix(1_000_000, 0)
	limits := []Limit{{Requests: 100, Per: time.Second, Burst: 100}, {Requests: 5, Per: time.Minute, Burst: 5}}
	d := m.Allow([]byte("k"), limits, now)
	if !d.Allowed || d.Limit != 1 || d.Remaining != 4 || d.Reset != 12*time.Second {
		t.Fatalf("%+v, want the per-minute limit with 4 left and 12s to a full burst", d)
	}
}

func TestBoundedKeys(t *testing.T) {
	t.Parallel()
	m := NewMemoryLimiter(640) // 10 per shard
	now := time.Unix(1_000_000, 0)
	limits := []Limit{{Requests: 1, Per: time.Hour, Burst: 1}}
	for i := range 10_000 {
		m.Allow(fmt.Appendf(nil, "k%d", i), limits, now)
	}
	total := 0
	for i := range m.shards {
		total += len(m.shards[i].tats)
	}
	if total > 640 {
		t.Fatalf("%d keys tracked, bound 640", total)
	}
}

func TestConcurrentAllow(t *testing.T) {
	t.Parallel()
	m := NewMemoryLimiter(0)
	limits := []Limit{{Requests: 1000, Per: time.Hour, Burst: 1000}}
	now := time.Unix(1_000_000, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if m.Allow([]byte("shared"), limits, now).Allowed {
					mu.Lock()
					passed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if passed != 1000 {
		t.Fatalf("%d of 4000 concurrent requests passed a burst of 1000", passed)
	}
}

// BenchmarkAllow is the local limiter's hot path for a known key: budget < 200 ns, 0 allocs.
func BenchmarkAllow(b *testing.B) {
	m := NewMemoryLimiter(0)
	limits := []Limit{{Requests: 1 << 30, Per: time.Second, Burst: 1 << 30}, {Requests: 1 << 30, Per: time.Hour, Burst: 1 << 30}}
	key := []byte("203.0.113.7")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		m.Allow(key, limits, now)
	}
}

// TestLimitCountChangeKeepsLimiting: a reload that adds a limit must not leave known keys
// unlimited (their stored state is replaced, and then counted again).
func TestLimitCountChangeKeepsLimiting(t *testing.T) {
	t.Parallel()
	m := NewMemoryLimiter(0)
	now := time.Unix(1_000_000, 0)
	one := []Limit{{Requests: 1, Per: time.Hour, Burst: 1}}
	m.Allow([]byte("k"), one, now)
	two := []Limit{{Requests: 1, Per: time.Hour, Burst: 1}, {Requests: 100, Per: time.Second, Burst: 100}}
	admitted := 0
	for range 10 {
		if m.Allow([]byte("k"), two, now).Allowed {
			admitted++
		}
	}
	if admitted != 1 {
		t.Fatalf("%d of 10 admitted under 1 per hour after the limit set changed", admitted)
	}
}
