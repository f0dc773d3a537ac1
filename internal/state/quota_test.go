package state

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/usage"
)

func TestQuotaWindows(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip("no zoneinfo")
	}
	now := time.Date(2026, 3, 31, 23, 30, 0, 0, time.UTC) // already April 1st in Paris
	start, end := Quota{Period: "day", Location: paris}.Window(now)
	if start.Day() != 1 || start.Month() != 4 || end.Sub(start) != 24*time.Hour {
		t.Errorf("Paris day window %v - %v", start, end)
	}
	start, end = Quota{Period: "month"}.Window(now)
	if !start.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || !end.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("UTC month window %v - %v", start, end)
	}
	// A DST change day in Paris is 23 hours long.
	start, end = Quota{Period: "day", Location: paris}.Window(time.Date(2026, 3, 29, 12, 0, 0, 0, time.UTC))
	if end.Sub(start) != 23*time.Hour {
		t.Errorf("DST day lasts %v", end.Sub(start))
	}
}

func TestMemoryQuotas(t *testing.T) {
	t.Parallel()
	m := NewMemoryQuotas(0)
	quotas := []Quota{{Requests: 5, Period: "day"}, {Requests: 3, Period: "month"}}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		d := m.Take("acme", quotas, now)
		if !d.Allowed || d.Quota != 1 || d.Remaining != 2-i {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := m.Take("acme", quotas, now)
	if d.Allowed || d.Quota != 1 || !d.Reset.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("over the monthly quota: %+v", d)
	}
	// A refused request took nothing from the daily quota: next month the day has 5 again.
	if d := m.Take("acme", quotas[:1], now); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("daily quota after refusals: %+v (refused requests were counted)", d)
	}
	// Calendar reset.
	if d := m.Take("acme", quotas, time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC)); !d.Allowed {
		t.Fatalf("new month: %+v", d)
	}
}

func TestRedisQuotasShared(t *testing.T) {
	addr, _ := startRedis(t)
	a, b := newRedis(t, addr).Quotas("p"), newRedis(t, addr).Quotas("p")
	quotas := []Quota{{Requests: 4, Period: "day"}}
	now := time.Now()
	allowed := 0
	for i := range 10 {
		q := a
		if i%2 == 1 {
			q = b
		}
		d, err := q.Take(context.Background(), "acme", quotas, now)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
	}
	if allowed != 4 {
		t.Fatalf("two nodes admitted %d requests against a daily quota of 4", allowed)
	}
}

func TestRedisUsageStoreAppliesOnce(t *testing.T) {
	addr, _ := startRedis(t)
	s := newRedis(t, addr).UsageStore(0, 0)
	hour := time.Now().Unix() - time.Now().Unix()%3600
	b := usage.Batch{ID: "b1", Items: map[usage.Key]usage.Counts{
		{Consumer: "acme", Route: "orders", Class: "2xx", Hour: hour}:  {Requests: 3, BytesIn: 30, BytesOut: 300},
		{Consumer: "acme", Route: "orders", Class: "5xx", Hour: hour}:  {Requests: 1},
		{Consumer: "globex", Route: "items", Class: "2xx", Hour: hour}: {Requests: 2},
	}}
	for range 3 { // a retried flush
		if err := s.Apply(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Query(context.Background(), "", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[usage.Key{Consumer: "acme", Route: "orders", Class: "2xx", Hour: hour}] != (usage.Counts{Requests: 3, BytesIn: 30, BytesOut: 300}) {
		t.Fatalf("totals %+v", got)
	}
}

// TestQuotaWindowContainsNow: in zones whose DST change happens at midnight, a window always
// contains the instant it was computed for, so a reset is never in the past.
func TestQuotaWindowContainsNow(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"America/Santiago", "America/Havana", "America/Asuncion", "Europe/Paris", "UTC"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Skipf("no zoneinfo for %s", zone)
		}
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for h := 0; h < 24*366; h++ {
			now := start.Add(time.Duration(h)*time.Hour + 30*time.Minute)
			for _, period := range []string{"day", "month"} {
				ws, we := Quota{Period: period, Location: loc}.Window(now)
				if now.Before(ws) || !now.Before(we) {
					t.Fatalf("%s %s at %v: window [%v, %v) does not contain it", zone, period, now, ws, we)
				}
			}
		}
	}
}

// TestQuotaCountersOfThePeriodAreKept: a full table never forgets this period's counters.
func TestQuotaCountersOfThePeriodAreKept(t *testing.T) {
	t.Parallel()
	m := NewMemoryQuotas(64)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	day := []Quota{{Requests: 1, Period: "day"}}
	m.Take("first", day, now)
	for i := range 1000 {
		m.Take("c"+strconv.Itoa(i), day, now.Add(2*time.Minute))
	}
	if d := m.Take("first", day, now.Add(3*time.Minute)); d.Allowed {
		t.Fatal("a full table handed a consumer its used daily quota back")
	}
	// Past periods are swept as shards take new counters.
	for i := range 200 {
		m.Take("late"+strconv.Itoa(i), day, now.Add(48*time.Hour))
	}
	total := 0
	for i := range m.shards {
		total += len(m.shards[i].counts)
	}
	if total > 300 {
		t.Fatalf("%d counters two days later, want yesterday's 1001 swept", total)
	}
}

// TestQuotaRefusalNamesTheLastReset: when several quotas are exhausted, the refusal names the
// one that resets last (the month, not the day), in memory and in Redis alike; Retry-After
// taken from the day would send the client back to another refusal.
func TestQuotaRefusalNamesTheLastReset(t *testing.T) {
	addr, _ := startRedis(t)
	quotas := []Quota{{Requests: 2, Period: "day"}, {Requests: 2, Period: "month"}}
	now := time.Now().UTC()
	_, monthEnd := quotas[1].Window(now)
	mem, red := NewMemoryQuotas(0), newRedis(t, addr).Quotas("last-reset")
	takers := map[string]func() (QuotaDecision, error){
		"memory": func() (QuotaDecision, error) { return mem.Take("acme", quotas, now), nil },
		"redis":  func() (QuotaDecision, error) { return red.Take(context.Background(), "acme", quotas, now) },
	}
	for name, take := range takers {
		for i := range 3 {
			d, err := take()
			if err != nil {
				t.Fatal(err)
			}
			if i < 2 {
				if !d.Allowed {
					t.Fatalf("%s: request %d refused: %+v", name, i, d)
				}
				continue
			}
			if d.Allowed || d.Quota != 1 || !d.Reset.Equal(monthEnd) {
				t.Errorf("%s: both quotas exhausted, refusal %+v; want quota 1 resetting %v", name, d, monthEnd)
			}
		}
	}
}

// TestRedisUsageQueryAcrossDays: a query over every consumer and many weeks, read in several
// pipelines, returns every hour in range, those at the edges included, and nothing outside it.
func TestRedisUsageQueryAcrossDays(t *testing.T) {
	addr, _ := startRedis(t)
	s := newRedis(t, addr).UsageStore(0, 0)
	from := time.Date(2026, 10, 1, 5, 0, 0, 0, time.UTC)
	to := from.Add(50 * 24 * time.Hour) // 1,200 hours per consumer: three pipelines for two
	items := map[usage.Key]usage.Counts{}
	want := map[usage.Key]usage.Counts{}
	for _, c := range []string{"acme", "globex"} {
		for _, at := range []time.Time{from.Add(-time.Hour), from, from.Add(23 * time.Hour), from.Add(24 * time.Hour),
			from.Add(999 * time.Hour), from.Add(1000 * time.Hour), to.Add(-time.Hour), to} {
			k := usage.Key{Consumer: c, Route: "orders", Class: "2xx", Hour: at.Unix()}
			items[k] = usage.Counts{Requests: at.Unix()%1000 + int64(len(c))}
			if !at.Before(from) && at.Before(to) {
				want[k] = items[k]
			}
		}
	}
	if err := s.Apply(context.Background(), usage.Batch{ID: "days", Items: items}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Query(context.Background(), "", from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d hours returned, want %d: %v", len(got), len(want), got)
	}
	for k, c := range want {
		if got[k] != c {
			t.Errorf("%s at %v: %+v, want %+v", k.Consumer, time.Unix(k.Hour, 0).UTC(), got[k], c)
		}
	}
}
