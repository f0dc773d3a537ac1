package breaker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

// backend is a next handler whose answer the test switches.
type backend struct {
	calls  atomic.Int32
	status atomic.Int32 // 0: an upstream error (502 policy.Error); else write this status
	delay  time.Duration
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) error {
	b.calls.Add(1)
	time.Sleep(b.delay)
	s := int(b.status.Load())
	if s == 0 {
		return &policy.Error{Status: 502, Code: "upstream_connect_failed"}
	}
	w.WriteHeader(s)
	return nil
}

func do(p policy.Policy, b *backend) (int, string) {
	res := policytest.Serve(p, httptest.NewRequest("GET", "/", nil), &policy.Exchange{}, b.serve)
	if pe := policytest.PolicyError(res.Err); pe != nil {
		return pe.Status, pe.Code
	}
	return res.Rec.Code, ""
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTripsFallsBackAndRecovers(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"consecutive_failures": 3, "open_for": "200ms"}`).(*breaker)
	b := &backend{}
	for range 3 {
		if s, _ := do(p, b); s != 502 {
			t.Fatalf("a failing upstream's error must pass through while closed: %d", s)
		}
	}
	if p.State() != "open" {
		t.Fatalf("state %s after 3 failures, want open", p.State())
	}
	calls := b.calls.Load()
	s, code := do(p, b)
	if s != 503 || code != "circuit_open" || b.calls.Load() != calls {
		t.Fatalf("open breaker: %d %s, upstream called %d more times", s, code, b.calls.Load()-calls)
	}
	b.status.Store(200) // the upstream heals
	eventually(t, "the breaker to let a probe through", func() bool { s, _ := do(p, b); return s == 200 })
	if p.State() != "closed" {
		t.Fatalf("state %s after a successful probe, want closed", p.State())
	}
}

func TestFailureRatioNeedsVolume(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"failure_ratio": 0.5, "min_requests": 10, "window": "1m"}`).(*breaker)
	ok, bad := &backend{}, &backend{}
	ok.status.Store(200)
	bad.status.Store(503)
	for range 4 {
		do(p, bad)
	}
	if p.State() != "closed" {
		t.Fatal("tripped below min_requests")
	}
	for range 3 {
		do(p, ok)
	}
	for range 3 {
		do(p, bad) // 7 failures of 10
	}
	if p.State() != "open" {
		t.Fatalf("state %s at 70%% failures over 10 requests, want open", p.State())
	}
}

func TestClientFaultsAndCancellationsDoNotCount(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"consecutive_failures": 2}`).(*breaker)
	clientErr := func(http.ResponseWriter, *http.Request) error {
		return &policy.Error{Status: 413, Code: "body_too_large"}
	}
	for range 5 {
		policytest.Serve(p, httptest.NewRequest("POST", "/", nil), nil, clientErr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		policytest.Serve(p, httptest.NewRequest("GET", "/", nil).WithContext(ctx), nil, (&backend{}).serve)
	}
	if p.State() != "closed" {
		t.Fatalf("client-side failures tripped the breaker: %s", p.State())
	}
}

func TestSlowCallsCount(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"consecutive_failures": 2, "slow_call": "5ms"}`).(*breaker)
	slow := &backend{delay: 30 * time.Millisecond}
	slow.status.Store(200)
	do(p, slow)
	do(p, slow)
	if p.State() != "open" {
		t.Fatalf("two slow calls: %s, want open", p.State())
	}
}

func TestCustomFallback(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"consecutive_failures": 1, "fallback": {"status": 200, "body": "{\"items\": []}", "headers": {"Content-Type": "application/json", "X-Fallback": "1"}}}`)
	b := &backend{}
	do(p, b)
	ex := &policy.Exchange{}
	res := policytest.Serve(p, httptest.NewRequest("GET", "/", nil), ex, b.serve)
	if res.Err != nil || res.Rec.Code != 200 || res.Rec.Body.String() != `{"items": []}` || res.Rec.Header().Get("X-Fallback") != "1" {
		t.Fatalf("fallback: %v %d %q %v", res.Err, res.Rec.Code, res.Rec.Body.String(), res.Rec.Header())
	}
	if ex.ErrorCode != "circuit_open" {
		t.Errorf("the access log would not show the fallback: %+v", ex)
	}
}

// TestStateSurvivesReload: the next snapshot's instance (same id and settings) sees the breaker
// open; other settings start a fresh one.
func TestStateSurvivesReload(t *testing.T) {
	t.Parallel()
	pool := &policytest.Pool{}
	opts := func(bc *policy.BuildContext) { bc.Pool, bc.ID = pool, "routes/r/circuit_breaker#0" }
	cfg := `{"consecutive_failures": 1, "open_for": "1m"}`
	a := policytest.MustBuild(t, Kind, cfg, opts).(*breaker)
	do(a, &backend{})
	b := policytest.MustBuild(t, Kind, cfg, opts).(*breaker)
	a.Close()
	if b.State() != "open" {
		t.Fatalf("after a reload: %s, want open", b.State())
	}
	c := policytest.MustBuild(t, Kind, `{"consecutive_failures": 2, "open_for": "1m"}`, opts).(*breaker)
	if c.State() != "closed" {
		t.Fatalf("new settings: %s, want a fresh closed breaker", c.State())
	}
	b.Close()
	c.Close()
	if pool.Len() != 0 {
		t.Errorf("%d breakers left in the pool", pool.Len())
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`{"failure_ratio": 1.5}`, `{"consecutive_failures": -1}`, `{"open_for": "1ms"}`, `{"failure_statuses": [42]}`, `{"fallback": {"status": 99}}`, `{"slow_call": "0s"}`} {
		if _, err := policytest.Build(Kind, bad); err == nil {
			t.Errorf("%s built", bad)
		}
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/circuit_breaker.md", Kind)
}

// TestAbortedProbeDoesNotWedge: a half-open probe whose stream is aborted (ReverseProxy panics
// with http.ErrAbortHandler) still reports, so the breaker does not stay half-open forever.
func TestAbortedProbeDoesNotWedge(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"consecutive_failures": 1, "open_for": "100ms"}`).(*breaker)
	do(p, &backend{}) // trips
	eventually(t, "half-open", func() bool { return p.State() != "open" })
	func() {
		defer func() { _ = recover() }()
		policytest.Serve(p, httptest.NewRequest("GET", "/", nil), &policy.Exchange{}, func(http.ResponseWriter, *http.Request) error {
			panic(http.ErrAbortHandler)
		})
	}()
	ok := &backend{}
	ok.status.Store(200)
	eventually(t, "the breaker to take probes again and close", func() bool { do(p, ok); return p.State() == "closed" })
}

// TestStreamingProbeReportsAtHeaders: a probe that streams for long frees the half-open slot as
// soon as its headers are out.
func TestStreamingProbeReportsAtHeaders(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"consecutive_failures": 1, "open_for": "100ms"}`).(*breaker)
	do(p, &backend{})
	eventually(t, "half-open", func() bool { return p.State() != "open" })
	headersOut, release := make(chan struct{}), make(chan struct{})
	go policytest.Serve(p, httptest.NewRequest("GET", "/", nil), &policy.Exchange{}, func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(200)
		close(headersOut)
		<-release // the stream goes on
		return nil
	})
	<-headersOut
	if p.State() != "closed" {
		t.Errorf("state %s while the successful probe still streams, want closed", p.State())
	}
	close(release)
}
