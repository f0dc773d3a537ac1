package e2e

import (
	"net/http"
	"strings"
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
	adminAddr := freePort(t)
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
admin: { addr: "{{.admin}}" }
upstreams:
  flaky: { targets: [{ url: "{{.b}}" }] }
routes:
  - name: items
    match: { path: /items }
    upstream: flaky
    policies:
      - circuit_breaker: { consecutive_failures: 3, open_for: 300ms, fallback: { status: 200, body: cached } }
`, map[string]any{"b": b.URL, "admin": adminAddr})
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
	// The breaker's state is visible in the admin API.
	resp, err := client().Get("http://" + adminAddr + "/admin/routes")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, `"state": "open"`) {
		t.Errorf("GET /admin/routes does not show the open breaker:\n%s", body)
	}
	healthy.Store(true)
	eventually(t, 10*time.Second, "the route to recover", func() bool { _, body := get(); return body == "fresh" })
}
