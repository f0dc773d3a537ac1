package upstream

import (
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/refpool"
	"github.com/limen-gateway/limen/policy"
)

// fakeClock drives the latency estimates' clock by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now(time.Time) int64            { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration)        { c.ns.Add(int64(d)) }
func (c *fakeClock) install(u *Upstream) *fakeClock { c.ns.Store(1); u.mono = c.now; return c }

func newUpstream(t testing.TB, o Options) *Upstream {
	t.Helper()
	if o.Name == "" {
		o.Name = "u"
	}
	u, err := New(o, &refpool.Pool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func TestLatencyEstimator(t *testing.T) {
	t.Parallel()
	const tau = float64(10 * time.Second)
	ms := float64(time.Millisecond)
	type obs struct {
		at     time.Duration // since the first observation
		rtt    float64
		failed bool
	}
	cases := []struct {
		name string
		obs  []obs
		read time.Duration
		want float64
	}{
		{"first observation is taken as it is", []obs{{0, 10 * ms, false}}, 0, 10 * ms},
		{"a peak replaces the average at once", []obs{{0, 10 * ms, false}, {time.Millisecond, 80 * ms, false}}, time.Millisecond, 80 * ms},
		{"a faster observation moves it by 1-exp(-dt/tau)", []obs{{0, 100 * ms, false}, {10 * time.Second, 0, false}}, 10 * time.Second, 100 * ms * math.Exp(-1)},
		{"a fast failure never lowers it", []obs{{0, 40 * ms, false}, {time.Second, 1 * ms, true}}, time.Second, 40 * ms},
		{"a slow failure raises it", []obs{{0, 40 * ms, false}, {time.Second, 90 * ms, true}}, time.Second, 90 * ms},
		{"it decays on read", []obs{{0, 50 * ms, false}}, 20 * time.Second, 50 * ms * math.Exp(-2)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var l latency
			const base = int64(time.Hour)
			for _, o := range c.obs {
				l.observe(base+int64(o.at), o.rtt, tau, o.failed)
			}
			got, ok := l.current(base+int64(c.read), tau)
			if !ok || math.Abs(got-c.want) > c.want*1e-9+1 {
				t.Fatalf("estimate %.0fns (ok %v), want %.0fns", got, ok, c.want)
			}
		})
	}
	var fresh latency
	if _, ok := fresh.current(1, tau); ok {
		t.Fatal("an estimate without observations")
	}
}

// simulate runs an open-loop discrete-event simulation on the fake clock: one request every
// interval, each finishing after its target's latency (so attempts overlap and in-flight
// counts matter), and returns how many requests each target got.
func simulate(t testing.TB, u *Upstream, c *fakeClock, steps int, interval time.Duration, lat func(*Target) time.Duration) map[string]int {
	t.Helper()
	type pending struct {
		t    *Target
		done int64
		lat  time.Duration
	}
	var out []pending
	counts := map[string]int{}
	for range steps {
		c.advance(interval)
		now := c.ns.Load()
		kept := out[:0]
		for _, p := range out {
			if p.done <= now {
				u.End(p.t, Success, p.lat)
			} else {
				kept = append(kept, p)
			}
		}
		out = kept
		tg, err := u.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		tg.Begin()
		d := lat(tg)
		out = append(out, pending{tg, now + int64(d), d})
		counts[tg.Key]++
	}
	for _, p := range out {
		u.End(p.t, Success, p.lat)
	}
	return counts
}

func TestEWMA(t *testing.T) {
	t.Parallel()
	const k1, k2, k3 = "http://127.0.0.1:1000", "http://127.0.0.1:2000", "http://127.0.0.1:3000"
	latencies := func(m map[string]time.Duration) func(*Target) time.Duration {
		return func(t *Target) time.Duration { return m[t.Key] }
	}
	cases := []struct {
		name    string
		weights []int
		lat     map[string]time.Duration
		every   time.Duration
		// share bounds the fraction of requests each target gets.
		min, max map[string]float64
	}{
		{"a slow target gets less traffic", []int{1, 1, 1},
			map[string]time.Duration{k1: time.Millisecond, k2: time.Millisecond, k3: 50 * time.Millisecond}, time.Millisecond,
			map[string]float64{k1: 0.35, k2: 0.35}, map[string]float64{k3: 0.10}},
		{"ties spread evenly", []int{1, 1},
			map[string]time.Duration{k1: 5 * time.Millisecond, k2: 5 * time.Millisecond}, time.Millisecond,
			map[string]float64{k1: 0.4, k2: 0.4}, map[string]float64{k1: 0.6, k2: 0.6}},
		{"weights scale the share", []int{3, 1},
			map[string]time.Duration{k1: 10 * time.Millisecond, k2: 10 * time.Millisecond}, 250 * time.Microsecond,
			map[string]float64{k1: 0.6}, map[string]float64{k1: 0.9, k2: 0.4}},
		{"latency beats weight when it is far worse", []int{2, 1},
			map[string]time.Duration{k1: 100 * time.Millisecond, k2: time.Millisecond}, time.Millisecond,
			map[string]float64{k2: 0.8}, map[string]float64{k1: 0.2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t, Options{Balance: EWMA, Targets: specs(t, c.weights...)})
			clock := new(fakeClock).install(u)
			const steps = 10000
			counts := simulate(t, u, clock, steps, c.every, latencies(c.lat))
			t.Logf("requests per target: %v", counts)
			for k, lo := range c.min {
				if got := float64(counts[k]) / steps; got < lo {
					t.Errorf("%s got %.2f of requests, want at least %.2f (%v)", k, got, lo, counts)
				}
			}
			for k, hi := range c.max {
				if got := float64(counts[k]) / steps; got > hi {
					t.Errorf("%s got %.2f of requests, want at most %.2f (%v)", k, got, hi, counts)
				}
			}
		})
	}
}

func TestEWMAExactTiesAreBrokenAtRandom(t *testing.T) {
	t.Parallel()
	for _, observed := range []bool{true, false} {
		t.Run(fmt.Sprintf("observed=%v", observed), func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t, Options{Balance: EWMA, Targets: specs(t, 1, 1, 1)})
			new(fakeClock).install(u) // the clock stands still: equal stamps, equal estimates
			if observed {
				for _, tg := range *u.targets.Load() {
					tg.Begin()
					u.End(tg, Success, 7*time.Millisecond) // same value, same stamp
				}
			}
			counts := map[string]int{}
			for range 9000 {
				tg, err := u.Pick(nil)
				if err != nil {
					t.Fatal(err)
				}
				counts[tg.Key]++
			}
			for k, n := range counts {
				if n < 2400 || n > 3600 { // 3000 expected
					t.Fatalf("%s got %d of 9000 tied picks (%v)", k, n, counts)
				}
			}
		})
	}
}

func TestEWMARecoveringTargetGetsTrafficBack(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, Options{Balance: EWMA, EWMADecay: time.Second, Targets: specs(t, 1, 1)})
	clock := new(fakeClock).install(u)
	const fast, slow = "http://127.0.0.1:1000", "http://127.0.0.1:2000"
	var slowLat atomic.Int64
	slowLat.Store(int64(50 * time.Millisecond))
	lat := func(t *Target) time.Duration {
		if t.Key == slow {
			return time.Duration(slowLat.Load())
		}
		return time.Millisecond
	}
	if got := simulate(t, u, clock, 2000, time.Millisecond, lat); got[slow] > 200 {
		t.Fatalf("slow target got %d of 2000 requests", got[slow])
	}
	slowLat.Store(int64(time.Millisecond))
	// Its estimate decays while it gets no traffic, so it is tried again, answers fast and
	// wins back its share: after 10 τ the two are indistinguishable.
	simulate(t, u, clock, 10000, time.Millisecond, lat)
	got := simulate(t, u, clock, 5000, time.Millisecond, lat)
	if got[slow] < 1500 {
		t.Fatalf("recovered target got %d of the last 5000 requests (%v)", got[slow], got)
	}
}

func TestEWMANewTargetGetsTraffic(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, Options{Balance: EWMA, Targets: specs(t, 1, 1)})
	clock := new(fakeClock).install(u)
	lat := func(*Target) time.Duration { return 20 * time.Millisecond }
	simulate(t, u, clock, 1000, time.Millisecond, lat)
	ts, err := u.makeTargets(specs(t, 1, 1, 1)) // a third target appears (DNS refresh)
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range u.setTargets(ts) {
		old.rel()
	}
	got := simulate(t, u, clock, 3000, time.Millisecond, lat)
	if n := got["http://127.0.0.1:3000"]; n < 600 {
		t.Fatalf("new target got %d of 3000 requests (%v)", n, got)
	}
	// The old targets kept their estimates across the refresh (pooled state).
	if est, ok := (*u.targets.Load())[0].state.rtt.current(clock.ns.Load(), u.tau); !ok || est < float64(time.Millisecond) {
		t.Fatalf("estimate lost across the refresh: %v %v", est, ok)
	}
}

func TestEWMASkipsTriedAndUnavailable(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, Options{Balance: EWMA, Targets: specs(t, 1, 1, 1)})
	ts := *u.targets.Load()
	ts[0].state.ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
	for range 200 {
		got, err := u.Pick([]*Target{ts[1]})
		if err != nil || got != ts[2] {
			t.Fatalf("picked %v, %v; want the only target neither ejected nor tried", got, err)
		}
	}
	if _, err := u.Pick([]*Target{ts[1], ts[2]}); err != ErrNoHealthyTarget {
		t.Fatalf("want ErrNoHealthyTarget, got %v", err)
	}
}

// keys returns n distinct hash keys.
func keys(n int) []Key {
	out := make([]Key, n)
	for i := range out {
		out[i] = KeyOf(fmt.Sprintf("user-%d", i))
	}
	return out
}

// mapping picks each key once (nothing in flight, so the load bound never applies).
func mapping(t testing.TB, u *Upstream, ks []Key) []string {
	t.Helper()
	out := make([]string, len(ks))
	for i, k := range ks {
		tg, err := u.PickKey(nil, k)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = tg.Key
	}
	return out
}

func hashOpts(weights ...int) Options {
	return Options{Balance: Hash, HashOn: "header:X-User", Targets: specs(nil, weights...)}
}

func TestHashSameKeySameTarget(t *testing.T) {
	t.Parallel()
	ks := keys(2000)
	a := newUpstream(t, hashOpts(1, 1, 1, 1, 1))
	first := mapping(t, a, ks)
	if again := mapping(t, a, ks); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatal("the same key went to different targets")
	}
	// Another replica, or the next reload, with the targets listed in another order.
	o := hashOpts(1, 1, 1, 1, 1)
	for i, j := 0, len(o.Targets)-1; i < j; i, j = i+1, j-1 {
		o.Targets[i], o.Targets[j] = o.Targets[j], o.Targets[i]
	}
	b := newUpstream(t, o)
	if other := mapping(t, b, ks); fmt.Sprint(other) != fmt.Sprint(first) {
		t.Fatal("a rebuilt ring with reordered targets maps keys differently")
	}
	counts := map[string]int{}
	for _, k := range first {
		counts[k]++
	}
	for k, n := range counts {
		if n < 200 || n > 600 { // 400 expected each
			t.Errorf("%s got %d of 2000 keys (%v)", k, n, counts)
		}
	}
}

func TestHashRemapping(t *testing.T) {
	t.Parallel()
	const n = 10000
	ks := keys(n)
	ten := mapping(t, newUpstream(t, hashOpts(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)), ks)

	t.Run("adding a target moves about 1/n of the keys, all to it", func(t *testing.T) {
		t.Parallel()
		eleven := mapping(t, newUpstream(t, hashOpts(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)), ks)
		moved := 0
		for i := range ks {
			if eleven[i] != ten[i] {
				moved++
				if eleven[i] != "http://127.0.0.1:11000" {
					t.Fatalf("key %d moved from %s to %s, not to the new target", i, ten[i], eleven[i])
				}
			}
		}
		// Expect n/11 = 909; 160 points per target keep a target's share within about ±25%.
		if moved < 500 || moved > 1400 {
			t.Fatalf("%d of %d keys moved, want about %d", moved, n, n/11)
		}
	})
	t.Run("removing a target moves only its keys", func(t *testing.T) {
		t.Parallel()
		o := hashOpts(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
		removed := o.Targets[3].URL.Scheme + "://" + o.Targets[3].URL.Host
		o.Targets = append(o.Targets[:3:3], o.Targets[4:]...)
		nine := mapping(t, newUpstream(t, o), ks)
		moved := 0
		for i := range ks {
			switch {
			case ten[i] == removed:
				moved++
				if nine[i] == removed {
					t.Fatalf("key %d still on the removed target", i)
				}
			case nine[i] != ten[i]:
				t.Fatalf("key %d moved from %s to %s though its target stayed", i, ten[i], nine[i])
			}
		}
		if moved < 500 || moved > 1500 {
			t.Fatalf("the removed target had %d of %d keys, want about %d", moved, n, n/10)
		}
	})
	t.Run("weights scale the share of keys", func(t *testing.T) {
		t.Parallel()
		got := mapping(t, newUpstream(t, hashOpts(2, 1)), ks)
		heavy := 0
		for _, k := range got {
			if k == "http://127.0.0.1:1000" {
				heavy++
			}
		}
		if heavy < n*55/100 || heavy > n*78/100 { // 2/3 expected
			t.Fatalf("weight 2 of 3 got %d of %d keys", heavy, n)
		}
	})
}

// nextOnRing walks the ring from k's point and returns the first target not in skip.
func nextOnRing(u *Upstream, k Key, skip ...*Target) *Target {
	r := u.ring.Load()
	for i, j := 0, r.search(k.h); i < len(r.points); i, j = i+1, (j+1)%len(r.points) {
		t := r.ts[r.owner[j]]
		ok := true
		for _, s := range skip {
			ok = ok && t != s
		}
		if ok {
			return t
		}
	}
	return nil
}

func TestHashFallsBackToTheNextTargetOnTheRing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(home *Target) (tried []*Target, undo func())
	}{
		{"ejected", func(home *Target) ([]*Target, func()) {
			home.state.ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
			return nil, func() { home.state.ejectedUntil.Store(0) }
		}},
		{"unhealthy", func(home *Target) ([]*Target, func()) {
			home.state.healthy.Store(false)
			return nil, func() { home.state.healthy.Store(true) }
		}},
		{"tried", func(home *Target) ([]*Target, func()) { return []*Target{home}, func() {} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t, hashOpts(1, 1, 1, 1, 1))
			for _, k := range keys(200) {
				home, err := u.PickKey(nil, k)
				if err != nil || home != nextOnRing(u, k) {
					t.Fatalf("key's target %v (%v), want the first on the ring", home, err)
				}
				tried, undo := c.setup(home)
				got, err := u.PickKey(tried, k)
				undo()
				if want := nextOnRing(u, k, home); err != nil || got != want {
					t.Fatalf("fallback picked %v (%v), want the next target on the ring %v", got.Key, err, want.Key)
				}
			}
		})
	}
	u := newUpstream(t, hashOpts(1, 1))
	ts := *u.targets.Load()
	if _, err := u.PickKey(ts, KeyOf("x")); err != ErrNoHealthyTarget {
		t.Fatalf("every target tried: %v", err)
	}
}

func TestHashBoundedLoad(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		factor    float64
		minUsed   int // targets that take some of the hot key
		maxOnHome int
	}{
		{"default factor spills a hot key over", 0, 3, 32}, // ceil(1.25 × 100 / 4)
		{"a loose factor keeps it home", 1000, 1, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o := hashOpts(1, 1, 1, 1)
			o.HashBalanceFactor = c.factor
			u := newUpstream(t, o)
			hot := KeyOf("hot")
			home, _ := u.PickKey(nil, hot)
			used := map[*Target]int{}
			var all []*Target
			for range 100 { // none finishes: in-flight attempts pile up
				tg, err := u.PickKey(nil, hot)
				if err != nil {
					t.Fatal(err)
				}
				tg.Begin()
				used[tg]++
				all = append(all, tg)
			}
			if len(used) < c.minUsed || used[home] > c.maxOnHome || used[home] < 25 {
				t.Fatalf("hot key spread %v over %d targets; home took %d", used, len(used), used[home])
			}
			for tg, n := range used {
				if tg != home && n > used[home] {
					t.Fatalf("a spill target took more (%d) than the key's own (%d)", n, used[home])
				}
			}
			for _, tg := range all {
				u.End(tg, Success, time.Millisecond)
			}
			// With nothing in flight the key goes home again.
			if got, _ := u.PickKey(nil, hot); got != home {
				t.Fatal("the hot key did not return to its target once the load drained")
			}
		})
	}
}

func TestHashWithoutKeyIsRoundRobin(t *testing.T) {
	t.Parallel()
	u := newUpstream(t, hashOpts(1, 1, 1))
	counts := map[string]int{}
	for range 300 {
		tg, err := u.PickKey(nil, Key{})
		if err != nil {
			t.Fatal(err)
		}
		counts[tg.Key]++
	}
	for k, n := range counts {
		if n != 100 {
			t.Fatalf("%s got %d of 300 keyless requests, want 100 (%v)", k, n, counts)
		}
	}
}

// TestRequestKey is not parallel: it counts allocations.
func TestRequestKey(t *testing.T) {
	consumer := &policy.Principal{ID: "acme", Method: "api_key"}
	anon := &policy.Principal{ID: "anonymous", Method: "anonymous"}
	v4 := netip.MustParseAddr("192.0.2.7")
	cases := []struct {
		name   string
		hashOn string
		hdr    http.Header
		remote string
		path   string
		ex     *policy.Exchange
		want   Key
	}{
		{"header", "header:x-user", http.Header{"X-User": {"alice"}}, "", "/", nil, KeyOf("alice")},
		{"header missing", "header:x-user", http.Header{"X-Other": {"alice"}}, "", "/", nil, Key{}},
		{"header empty", "header:x-user", http.Header{"X-User": {""}}, "", "/", nil, Key{}},
		{"cookie", "cookie:sid", http.Header{"Cookie": {"a=1; sid=s3cr3t; b=2"}}, "", "/", nil, KeyOf("s3cr3t")},
		{"cookie on a later line, quoted", "cookie:sid", http.Header{"Cookie": {"a=1", `sid="q"`}}, "", "/", nil, KeyOf("q")},
		{"cookie name is exact", "cookie:sid", http.Header{"Cookie": {"xsid=1; sidx=2"}}, "", "/", nil, Key{}},
		{"cookie missing", "cookie:sid", http.Header{}, "", "/", nil, Key{}},
		{"client_ip from the exchange", "client_ip", nil, "10.0.0.1:5", "/", &policy.Exchange{ClientIP: v4}, KeyOf(string(ip16(v4)))},
		{"client_ip from the peer", "client_ip", nil, "192.0.2.7:5", "/", nil, KeyOf(string(ip16(v4)))},
		{"client_ip v4-mapped", "client_ip", nil, "[::ffff:192.0.2.7]:5", "/", nil, KeyOf(string(ip16(v4)))},
		{"consumer", "consumer", nil, "", "/", &policy.Exchange{Principal: consumer}, KeyOf("acme")},
		{"consumer anonymous", "consumer", nil, "", "/", &policy.Exchange{Principal: anon}, Key{}},
		{"consumer unauthenticated", "consumer", nil, "", "/", &policy.Exchange{}, Key{}},
		{"path", "path", nil, "", "/users/7", nil, KeyOf("/users/7")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := newUpstream(t, Options{Balance: Hash, HashOn: c.hashOn, Targets: specs(t, 1)})
			r := &http.Request{Header: c.hdr, RemoteAddr: c.remote, URL: &url.URL{Path: c.path}}
			if r.Header == nil {
				r.Header = http.Header{}
			}
			if got := u.RequestKey(r, c.ex); got != c.want {
				t.Fatalf("key %+v, want %+v", got, c.want)
			}
			if allocs := testing.AllocsPerRun(100, func() { u.RequestKey(r, c.ex) }); allocs != 0 {
				t.Fatalf("%v allocations per key", allocs)
			}
		})
	}
	if k := newUpstream(t, Options{Targets: specs(t, 1)}).RequestKey(&http.Request{URL: &url.URL{Path: "/"}}, nil); k.ok {
		t.Fatal("a round robin upstream computed a hash key")
	}
}

func ip16(a netip.Addr) []byte { b := a.As16(); return b[:] }

func TestBalancerOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"hash without hash_on", Options{Balance: Hash}, false},
		{"hash with a bad hash_on", Options{Balance: Hash, HashOn: "header:"}, false},
		{"hash with an unknown source", Options{Balance: Hash, HashOn: "query:x"}, false},
		{"hash with a factor below 1", Options{Balance: Hash, HashOn: "path", HashBalanceFactor: 0.5}, false},
		{"unknown balancer", Options{Balance: "random"}, false},
		{"hash", Options{Balance: Hash, HashOn: "cookie:sid"}, true},
		{"ewma", Options{Balance: EWMA, EWMADecay: time.Second}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.o.Name, c.o.Targets = "u", specs(t, 1)
			u, err := New(c.o, &refpool.Pool{}, nil)
			if (err == nil) != c.ok {
				t.Fatalf("New: %v, want ok %v", err, c.ok)
			}
			if u != nil {
				u.Close()
			}
		})
	}
}

// TestBalancersConcurrently races picks, Begin/End and target-set swaps (DNS refreshes); run it
// with -race.
func TestBalancersConcurrently(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{Balance: EWMA, Targets: specs(t, 1, 2, 1, 1)},
		hashOpts(1, 2, 1, 1),
		{Balance: LeastRequest, Targets: specs(t, 1, 2, 1, 1)},
		{Balance: RoundRobin, Targets: specs(t, 1, 2, 1, 1)},
	} {
		t.Run(o.Balance, func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t, o)
			var wg sync.WaitGroup
			var picks atomic.Int64
			stop := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					ws := []int{1, 2, 1, 1, 1}[:4+i%2]
					ts, err := u.makeTargets(specs(t, ws...))
					if err != nil {
						t.Error(err)
						return
					}
					for _, old := range u.setTargets(ts) {
						old.rel()
					}
					time.Sleep(100 * time.Microsecond)
				}
			}()
			ks := keys(64)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 2000 {
						k := ks[(g*31+i)%len(ks)]
						if i%5 == 0 {
							k = Key{}
						}
						tg, err := u.PickKey(nil, k)
						if err != nil {
							t.Error(err)
							return
						}
						tg.Begin()
						u.End(tg, Outcome(i%7/6), time.Duration(i%50)*time.Millisecond)
						picks.Add(1)
					}
				}()
			}
			for picks.Load() < 8*2000 && !t.Failed() {
				time.Sleep(time.Millisecond)
			}
			close(stop)
			wg.Wait()
			for _, st := range u.Status().Targets {
				if st.InFlight != 0 {
					t.Errorf("%s: %d in flight after every attempt ended", st.URL, st.InFlight)
				}
			}
		})
	}
}

func BenchmarkPickBalancers(b *testing.B) {
	ks := keys(1024)
	for _, o := range []Options{
		{Balance: EWMA, Targets: specs(nil, 1, 2, 3, 1, 1, 1, 1, 1, 1, 1)},
		hashOpts(1, 2, 3, 1, 1, 1, 1, 1, 1, 1),
	} {
		b.Run(o.Balance, func(b *testing.B) {
			u := newUpstream(b, o)
			for _, t := range *u.targets.Load() { // a little load, and estimates to compare
				t.Begin()
				u.End(t, Success, time.Duration(t.Weight)*time.Millisecond)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := u.PickKey(nil, ks[i&1023]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	b.Run("hash_busy", func(b *testing.B) {
		// Every target has attempts in flight, so each pick checks the load bound.
		u := newUpstream(b, hashOpts(1, 2, 3, 1, 1, 1, 1, 1, 1, 1))
		for _, t := range *u.targets.Load() {
			for range 5 {
				t.Begin()
			}
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := u.PickKey(nil, ks[i&1023]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkRequestKey(b *testing.B) {
	r := &http.Request{Header: http.Header{"X-User": {"alice"}, "Cookie": {"a=1; sid=s3cr3t"}},
		RemoteAddr: "192.0.2.7:5", URL: &url.URL{Path: "/users/7"}}
	ex := &policy.Exchange{ClientIP: netip.MustParseAddr("192.0.2.7")}
	for _, on := range []string{"header:X-User", "cookie:sid", "client_ip", "path"} {
		b.Run(on, func(b *testing.B) {
			u := newUpstream(b, Options{Balance: Hash, HashOn: on, Targets: specs(nil, 1)})
			b.ReportAllocs()
			for b.Loop() {
				u.RequestKey(r, ex)
			}
		})
	}
}
