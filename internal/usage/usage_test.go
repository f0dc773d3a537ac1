package usage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// flaky is a store that fails while down, counting applications.
type flaky struct {
	*MemoryStore
	mu      sync.Mutex
	down    bool
	applied int
}

func (f *flaky) Apply(ctx context.Context, b Batch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("store down")
	}
	f.applied++
	return f.MemoryStore.Apply(ctx, b)
}

func total(t *testing.T, s Store, consumer string) Counts {
	t.Helper()
	now := time.Now()
	m, err := s.Query(context.Background(), consumer, now.Add(-2*time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var c Counts
	for _, v := range m {
		c.add(v)
	}
	return c
}

func TestRecordFlushQuery(t *testing.T) {
	t.Parallel()
	store := NewMemoryStore(0)
	m := New(Options{Store: store, FlushInterval: time.Hour})
	defer m.Close()
	now := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				m.Record("acme", "orders", 200+(i%2)*300, 10, 100, now)
				if g == 0 && i%100 == 0 {
					_ = m.Flush(context.Background()) // flushes race with records
				}
			}
		}()
	}
	wg.Wait()
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := total(t, store, "acme")
	if got != (Counts{Requests: 8000, BytesIn: 80000, BytesOut: 800000}) {
		t.Fatalf("totals %+v, want every one of 8000 requests exactly once", got)
	}
	rows := Group(map[Key]Counts{
		{Consumer: "a", Route: "r", Class: "2xx", Hour: 3600}: {Requests: 1},
		{Consumer: "a", Route: "r", Class: "5xx", Hour: 7200}: {Requests: 2},
		{Consumer: "b", Route: "r", Class: "2xx", Hour: 3600}: {Requests: 4},
	}, []string{"consumer", "status"})
	if len(rows) != 3 || rows[0].Consumer != "a" || rows[0].Class != "2xx" || rows[2].Requests != 4 {
		t.Fatalf("grouped %+v", rows)
	}
}

// TestRetriedBatchesCountOnce: while the store fails, batches wait with their ids; once it is
// back, each is applied exactly once, even if a retry repeats one that already landed.
func TestRetriedBatchesCountOnce(t *testing.T) {
	t.Parallel()
	store := &flaky{MemoryStore: NewMemoryStore(0), down: true}
	m := New(Options{Store: store, FlushInterval: time.Hour})
	defer m.Close()
	now := time.Now()
	for range 3 {
		for range 10 {
			m.Record("acme", "r", 200, 0, 0, now)
		}
		if err := m.Flush(context.Background()); err == nil {
			t.Fatal("a flush to a failing store succeeded")
		}
	}
	store.mu.Lock()
	store.down = false
	store.mu.Unlock()
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Replaying an already applied batch changes nothing.
	b := Batch{ID: "fixed", Items: map[Key]Counts{{Consumer: "acme", Route: "r", Class: "2xx", Hour: now.Unix() - now.Unix()%3600}: {Requests: 5}}}
	_ = store.Apply(context.Background(), b)
	_ = store.Apply(context.Background(), b)
	if got := total(t, store, "acme"); got.Requests != 35 {
		t.Fatalf("%d requests counted, want 30 + 5", got.Requests)
	}
}

func TestPendingBoundCountsLosses(t *testing.T) {
	t.Parallel()
	store := &flaky{MemoryStore: NewMemoryStore(0), down: true}
	m := New(Options{Store: store, FlushInterval: time.Hour, MaxPending: 2})
	defer m.Close()
	for range 4 {
		m.Record("acme", "r", 200, 0, 0, time.Now())
		_ = m.Flush(context.Background())
	}
	if m.Dropped() != 2 {
		t.Fatalf("dropped %d, want the 2 requests beyond the bound", m.Dropped())
	}
}

// TestCloseFlushes: a graceful shutdown writes what was counted since the last flush.
func TestCloseFlushes(t *testing.T) {
	t.Parallel()
	store := NewMemoryStore(0)
	m := New(Options{Store: store, FlushInterval: time.Hour})
	m.Record("acme", "r", 200, 1, 2, time.Now())
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := total(t, store, "acme"); got.Requests != 1 {
		t.Fatalf("after Close: %+v", got)
	}
}
