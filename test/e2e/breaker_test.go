package e2e

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestCircuitBreakerEndToEnd: a failing backend trips the breaker, the fallback is served without
// touching the backend, and the route recovers once the backend heals.
func TestCircuitBreakerEndToEnd(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	var calls atomic.Int32
	b := backend(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("fresh"))
	})
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  flaky: { targets: [{ url: "{{.b}}" }] }
routes:
  - name: items
    match: { path: /items }
    upstream: flaky
    policies:
      - circuit_breaker: { consecutive_failures: 3, open_for: 300ms, fallback: { status: 200, body: cached } }
`, map[string]any{"b": b.URL})
	get := func() (int, string) {
		resp, err := client().Get(x.url("public", "/items"))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(t, resp)
	}
	for range 3 {
		if s, _ := get(); s != 503 {
			t.Fatalf("while closed the upstream's 503 passes through: %d", s)
		}
	}
	before := calls.Load()
	for range 5 {
		if s, body := get(); s != 200 || body != "cached" {
			t.Fatalf("open breaker: %d %q, want the fallback", s, body)
		}
	}
	if n := calls.Load() - before; n != 0 {
		t.Fatalf("the open breaker sent %d requests to the failing backend", n)
	}
	healthy.Store(true)
	eventually(t, 10*time.Second, "the route to recover", func() bool { _, body := get(); return body == "fresh" })
}
