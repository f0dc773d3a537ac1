package state

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testStore runs the same behaviour against every Store.
func testStore(t *testing.T, s Store, advance func(time.Duration)) {
	ctx := context.Background()
	if _, ok, err := s.Get(ctx, "a"); ok || err != nil {
		t.Fatalf("empty store: %v %v", ok, err)
	}
	if err := s.Set(ctx, "a", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get(ctx, "a"); !ok || err != nil || string(v) != "v1" {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	// SetNX: exactly one of many concurrent claims wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := s.SetNX(ctx, "claim", []byte("x"), time.Minute); err == nil && ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want 1", wins.Load())
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "a"); ok {
		t.Fatal("deleted key still there")
	}
	if err := s.Set(ctx, "big", make([]byte, 2<<20), time.Minute); err != ErrValueTooLarge {
		t.Fatalf("a 2 MiB value: %v", err)
	}
	s.Set(ctx, "short", []byte("v"), 100*time.Millisecond)
	advance(200 * time.Millisecond)
	if _, ok, _ := s.Get(ctx, "short"); ok {
		t.Fatal("an expired entry was returned")
	}
	if ok, _ := s.SetNX(ctx, "short", []byte("again"), time.Minute); !ok {
		t.Fatal("an expired key could not be claimed again")
	}
}

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	s := NewMemoryStore(0, 0)
	clock := time.Now()
	var mu sync.Mutex
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	testStore(t, s, func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() })
	small := NewMemoryStore(10, 0)
	for i := range 100 {
		small.Set(context.Background(), string(rune('a'+i%26))+string(rune(i)), []byte("v"), time.Hour)
	}
	if len(small.m) > 10 {
		t.Fatalf("%d entries, bound 10", len(small.m))
	}
}

func TestRedisStore(t *testing.T) {
	addr, _ := startRedis(t)
	testStore(t, newRedis(t, addr).Store("t", 0), func(d time.Duration) { time.Sleep(d) })
}
