package concurrency

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

// gate is a next handler that blocks each request until released, and reports entries.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{entered: make(chan struct{}, 100), release: make(chan struct{})} }

func (g *gate) serve(http.ResponseWriter, *http.Request) error {
	g.entered <- struct{}{}
	<-g.release
	return nil
}

func run(h policy.Handler, ctx context.Context, ex *policy.Exchange) <-chan error {
	done := make(chan error, 1)
	go func() {
		r := httptest.NewRequest("GET", "/", nil).WithContext(policy.WithExchange(ctx, ex))
		done <- h.ServeHTTP(httptest.NewRecorder(), r)
	}()
	return done
}

func status(err error) int {
	if pe := policytest.PolicyError(err); pe != nil {
		return pe.Status
	}
	return 0
}

func TestShedWhenFull(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"max": 2}`).(*limiter)
	g := newGate()
	h := p.Wrap(policy.HandlerFunc(g.serve))
	ex := func() *policy.Exchange { return &policy.Exchange{Route: "r"} }
	a, b := run(h, context.Background(), ex()), run(h, context.Background(), ex())
	<-g.entered
	<-g.entered
	if err := <-run(h, context.Background(), ex()); status(err) != 503 {
		t.Fatalf("third request: %v, want 503", err)
	}
	close(g.release)
	if err := <-a; err != nil {
		t.Fatal(err)
	}
	<-b
	if err := <-run(h, context.Background(), ex()); err != nil {
		t.Fatalf("after the others finished: %v", err)
	}
	if n := len(p.table.slots); n != 0 {
		t.Errorf("%d keys left in the table with nothing in flight", n)
	}
}

func TestQueue(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"max": 1, "queue": 1, "queue_timeout": "30s"}`).(*limiter)
	g := newGate()
	h := p.Wrap(policy.HandlerFunc(g.serve))
	ex := func() *policy.Exchange { return &policy.Exchange{Route: "r"} }
	first := run(h, context.Background(), ex())
	<-g.entered
	queued := run(h, context.Background(), ex())
	// Wait until the second request is in the queue, then a third is shed (queue full).
	for {
		p.table.mu.Lock()
		n := len(p.table.slots["r"].waiters)
		p.table.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-run(h, context.Background(), ex()); status(err) != 503 {
		t.Fatalf("with the queue full: %v, want 503", err)
	}
	g.release <- struct{}{} // the first finishes; its slot passes to the queued request
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-g.entered
	g.release <- struct{}{}
	if err := <-queued; err != nil {
		t.Fatalf("queued request: %v", err)
	}
}

func TestQueueTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"max": 1, "queue": 5, "queue_timeout": "50ms"}`).(*limiter)
	g := newGate()
	h := p.Wrap(policy.HandlerFunc(g.serve))
	first := run(h, context.Background(), &policy.Exchange{Route: "r"})
	<-g.entered
	if err := <-run(h, context.Background(), &policy.Exchange{Route: "r"}); status(err) != 503 {
		t.Fatalf("queue timeout: %v, want 503", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := run(h, ctx, &policy.Exchange{Route: "r"})
	cancel()
	if err := <-cancelled; status(err) != 503 {
		t.Fatalf("cancelled while queued: %v", err)
	}
	close(g.release)
	<-first
	p.table.mu.Lock()
	defer p.table.mu.Unlock()
	if len(p.table.slots) != 0 {
		t.Errorf("table not empty: %v", p.table.slots)
	}
}

func TestPerConsumer(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"max": 1, "key": "consumer"}`)
	g := newGate()
	h := p.Wrap(policy.HandlerFunc(g.serve))
	acme := &policy.Exchange{Principal: &policy.Principal{ID: "acme", Method: "api_key"}}
	globex := &policy.Exchange{Principal: &policy.Principal{ID: "globex", Method: "api_key"}}
	a := run(h, context.Background(), acme)
	b := run(h, context.Background(), globex)
	<-g.entered
	<-g.entered
	if err := <-run(h, context.Background(), &policy.Exchange{Principal: acme.Principal}); status(err) != 503 {
		t.Fatalf("acme's second: %v", err)
	}
	if err := <-run(h, context.Background(), &policy.Exchange{}); status(err) != 503 {
		t.Fatalf("no consumer: %v, want 503", err)
	}
	close(g.release)
	<-a
	<-b
}

// TestNoSlotLeaksUnderRace: many concurrent requests with timeouts and cancellations leave the
// table empty and never exceed max in flight.
func TestNoSlotLeaksUnderRace(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"max": 3, "queue": 4, "queue_timeout": "2ms"}`).(*limiter)
	var mu sync.Mutex
	inflight, peak := 0, 0
	h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
		return nil
	}))
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			if i%7 == 0 {
				cancel()
			}
			defer cancel()
			<-run(h, ctx, &policy.Exchange{Route: "r"})
		}()
	}
	wg.Wait()
	if peak > 3 {
		t.Errorf("%d in flight at once, max 3", peak)
	}
	if len(p.table.slots) != 0 {
		t.Errorf("slots leaked: %+v", p.table.slots["r"])
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`{}`, `{"max": 0}`, `{"max": 1, "key": "header"}`, `{"max": 1, "queue": -1}`, `{"max": 1, "queue": 1, "queue_timeout": "0s"}`, `{"max": 1, "queue_timeout": "5m"}`} {
		if _, err := policytest.Build(Kind, bad); err == nil {
			t.Errorf("%s built", bad)
		}
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/concurrency_limit.md", Kind)
}
