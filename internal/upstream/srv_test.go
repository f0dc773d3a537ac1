package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/limen-gateway/limen/internal/refpool"
)

const usersSRV = "_http._tcp.users.test."

// weights maps each target's scheme://host:port to its weight.
func weights(specs []TargetSpec) map[string]int {
	out := map[string]int{}
	for _, s := range specs {
		out[s.URL.Scheme+"://"+s.URL.Host] = s.Weight
	}
	return out
}

func statusWeights(u *Upstream) map[string]int {
	out := map[string]int{}
	for _, t := range u.Status().Targets {
		out[t.URL] = t.Weight
	}
	return out
}

func TestResolveSRV(t *testing.T) {
	t.Parallel()
	hosts := map[string][][4]byte{
		"a.test.": {{127, 0, 0, 1}, {127, 0, 0, 2}},
		"b.test.": {{127, 0, 0, 3}},
		"c.test.": {{127, 0, 0, 4}},
		"d.test.": {{127, 0, 0, 1}}, // shares an address with a.test.
		"e.test.": {},               // exists, no addresses
	}
	cases := []struct {
		name    string
		records []dnsmessage.SRVResource
		fail    []string
		scheme  string
		want    map[string]int
		wantErr string
	}{
		{"lowest priority group with weights", []dnsmessage.SRVResource{
			srv(20, 5, 9090, "c.test."), srv(10, 60, 8080, "a.test."), srv(10, 30, 8081, "b.test.")}, nil, "",
			map[string]int{"http://127.0.0.1:8080": 60, "http://127.0.0.2:8080": 60, "http://127.0.0.3:8081": 30}, ""},
		{"weight 0 is weight 1", []dnsmessage.SRVResource{
			srv(10, 0, 8080, "b.test."), srv(10, 9, 8081, "c.test.")}, nil, "",
			map[string]int{"http://127.0.0.3:8080": 1, "http://127.0.0.4:8081": 9}, ""},
		{"scheme", []dnsmessage.SRVResource{srv(0, 1, 8443, "c.test.")}, nil, "https",
			map[string]int{"https://127.0.0.4:8443": 1}, ""},
		{"fallback when the preferred group is gone from dns", []dnsmessage.SRVResource{
			srv(10, 1, 8080, "gone.test."), srv(10, 1, 8080, "e.test."), srv(10, 1, 8080, "."), srv(20, 7, 9090, "c.test.")}, nil, "",
			map[string]int{"http://127.0.0.4:9090": 7}, ""},
		{"an address reached twice sums its weights", []dnsmessage.SRVResource{
			srv(10, 2, 8080, "a.test."), srv(10, 3, 8080, "d.test.")}, nil, "",
			map[string]int{"http://127.0.0.1:8080": 5, "http://127.0.0.2:8080": 2}, ""},
		{"the same host on two ports", []dnsmessage.SRVResource{
			srv(10, 2, 8080, "b.test."), srv(10, 3, 8081, "b.test.")}, nil, "",
			map[string]int{"http://127.0.0.3:8080": 2, "http://127.0.0.3:8081": 3}, ""},
		{"no records", []dnsmessage.SRVResource{}, nil, "", nil, "no such host"},
		{"no such name", nil, nil, "", nil, "no such host"},
		{"only the root target", []dnsmessage.SRVResource{srv(0, 0, 0, ".")}, nil, "", nil, "has an address"},
		{"no target has an address", []dnsmessage.SRVResource{srv(10, 1, 80, "gone.test."), srv(20, 1, 80, "e.test.")}, nil, "", nil, "has an address"},
		{"a failing host fails the lookup", []dnsmessage.SRVResource{
			srv(10, 1, 8080, "a.test."), srv(10, 1, 8080, "broken.test.")}, []string{"broken.test."}, "", nil, "broken.test."},
		{"a failing srv lookup", nil, []string{usersSRV}, "", nil, "server misbehaving"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			z := &zone{a: hosts, srv: map[string][]dnsmessage.SRVResource{}, fail: map[string]bool{}}
			if c.records != nil {
				z.srv[usersSRV] = c.records
			}
			for _, f := range c.fail {
				z.fail[f] = true
			}
			d := startDNS(t)
			d.setZone(z)
			got, err := resolve(context.Background(), &DNSOptions{SRV: usersSRV, Scheme: c.scheme, Resolver: d.addr()})
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", weights(got), err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w := weights(got); fmt.Sprint(w) != fmt.Sprint(c.want) {
				t.Fatalf("targets %v, want %v", w, c.want)
			}
		})
	}
}

// logRecorder is a slog.Handler that keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *logRecorder) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds; the deadline only bounds a broken test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitRefreshes waits until n more DNS refreshes have finished.
func waitRefreshes(t *testing.T, u *Upstream, n int64) {
	t.Helper()
	start := u.refreshes.Load()
	waitFor(t, "dns refreshes", func() bool { return u.refreshes.Load() >= start+n })
}

func TestSRVDiscoveryRefresh(t *testing.T) {
	t.Parallel()
	d := startDNS(t)
	hosts := map[string][][4]byte{"a.test.": {{127, 0, 0, 1}}, "b.test.": {{127, 0, 0, 2}, {127, 0, 0, 3}}, "c.test.": {{127, 0, 0, 4}}}
	d.setZone(&zone{a: hosts, srv: map[string][]dnsmessage.SRVResource{
		usersSRV: {srv(1, 3, 8080, "a.test."), srv(1, 1, 8081, "b.test."), srv(2, 1, 9090, "c.test.")}}})
	log := &logRecorder{}
	u, err := New(Options{Name: "u", DNS: &DNSOptions{SRV: usersSRV, Refresh: 20 * time.Millisecond, Resolver: d.addr()},
		Passive: &PassiveCheck{ConsecutiveFailures: 1, EjectFor: time.Hour, MaxEjectionPercent: 100}}, &refpool.Pool{}, slog.New(log))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	first := map[string]int{"http://127.0.0.1:8080": 3, "http://127.0.0.2:8081": 1, "http://127.0.0.3:8081": 1}
	if got := statusWeights(u); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Fatalf("targets %v, want %v", got, first)
	}
	// Traffic follows the weights: smooth weighted round robin over 3:1:1.
	counts := map[string]int{}
	for range 50 {
		tg, err := u.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		counts[tg.Key]++
	}
	if counts["http://127.0.0.1:8080"] != 30 || counts["http://127.0.0.2:8081"] != 10 {
		t.Fatalf("picks %v, want 30:10:10", counts)
	}

	// Eject a target that the next set keeps: its state lives in the pool and survives the swap.
	for _, tg := range *u.targets.Load() {
		if tg.Key == "http://127.0.0.1:8080" {
			tg.Begin()
			u.End(tg, Failure, time.Millisecond)
		}
	}

	// A change in DNS is picked up: new weights, a host gone, the fallback group unused.
	d.setZone(&zone{a: hosts, srv: map[string][]dnsmessage.SRVResource{
		usersSRV: {srv(1, 5, 8080, "a.test."), srv(1, 2, 8082, "c.test."), srv(2, 1, 9090, "b.test.")}}})
	second := map[string]int{"http://127.0.0.1:8080": 5, "http://127.0.0.4:8082": 2}
	waitFor(t, "the new SRV records", func() bool { return fmt.Sprint(statusWeights(u)) == fmt.Sprint(second) })
	for _, st := range u.Status().Targets {
		if (st.EjectedUntil != nil) != (st.URL == "http://127.0.0.1:8080") {
			t.Fatalf("ejection not carried over the refresh: %+v", u.Status().Targets)
		}
	}

	// Failures keep the last good set, and are logged once per streak.
	d.setServfail(true)
	waitRefreshes(t, u, 3)
	if got := statusWeights(u); fmt.Sprint(got) != fmt.Sprint(second) {
		t.Fatalf("targets %v after failed lookups, want the last good set %v", got, second)
	}
	if n := log.count("dns discovery failed"); n != 1 {
		t.Fatalf("%d failure warnings in one streak, want 1", n)
	}
	// An empty answer (the SRV name gone) counts as a failure too, in the same streak.
	d.setZone(&zone{a: hosts, srv: map[string][]dnsmessage.SRVResource{}})
	d.setServfail(false)
	waitRefreshes(t, u, 3)
	if got := statusWeights(u); fmt.Sprint(got) != fmt.Sprint(second) {
		t.Fatalf("targets %v after an empty answer, want the last good set %v", got, second)
	}
	// So does a preferred group whose host fails to resolve: the set must not shrink on a hiccup.
	d.setZone(&zone{a: hosts, fail: map[string]bool{"c.test.": true}, srv: map[string][]dnsmessage.SRVResource{
		usersSRV: {srv(1, 5, 8080, "a.test."), srv(1, 2, 8082, "c.test.")}}})
	waitRefreshes(t, u, 3)
	if got := statusWeights(u); fmt.Sprint(got) != fmt.Sprint(second) {
		t.Fatalf("targets %v after a failed host lookup, want the last good set %v", got, second)
	}
	if n := log.count("dns discovery failed"); n != 1 {
		t.Fatalf("%d failure warnings in one streak, want 1", n)
	}

	// Recovery swaps the new set in and ends the streak; the next failure is logged again.
	d.setZone(&zone{a: hosts, srv: map[string][]dnsmessage.SRVResource{usersSRV: {srv(0, 1, 7070, "c.test.")}}})
	waitFor(t, "recovery", func() bool { return fmt.Sprint(statusWeights(u)) == "map[http://127.0.0.4:7070:1]" })
	waitFor(t, "the recovery log", func() bool { return log.count("dns discovery recovered") == 1 })
	d.setServfail(true)
	waitFor(t, "a second failure warning", func() bool { return log.count("dns discovery failed") == 2 })
}

func TestSRVDiscoveryStartFailure(t *testing.T) {
	t.Parallel()
	d := startDNS(t)
	d.setZone(&zone{})
	_, err := New(Options{Name: "u", DNS: &DNSOptions{SRV: usersSRV, Refresh: time.Hour, Resolver: d.addr()}}, &refpool.Pool{}, nil)
	if err == nil || !strings.Contains(err.Error(), "discover "+usersSRV) {
		t.Fatalf("got %v, want a discovery error naming %s", err, usersSRV)
	}
}
