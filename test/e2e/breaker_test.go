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

// TestUpstreamBreakerFallsBackToAnotherUpstream: a pool's breaker, shared by its routes, sends
// traffic to the fallback upstream while open, shows in the admin API and metrics, and closes
// when the pool heals.
func TestUpstreamBreakerFallsBackToAnotherUpstream(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	primary := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Write([]byte("primary"))
	})
	legacy := backend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("legacy")) })
	adminAddr := freePort(t)
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
admin: { addr: "{{.admin}}" }
upstreams:
  primary:
    targets: [{ url: "{{.primary}}" }]
    circuit_breaker: { consecutive_failures: 3, open_for: 300ms, fallback: legacy }
  legacy: { targets: [{ url: "{{.legacy}}" }] }
routes:
  - { name: a, match: { path: /a }, upstream: primary }
  - { name: b, match: { path: /b }, upstream: primary }
`, map[string]any{"primary": primary.URL, "legacy": legacy.URL, "admin": adminAddr})
	get := func(path string) (int, string) {
		resp, err := client().Get(x.url("public", path))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, readBody(t, resp)
	}
	// Failures through two routes trip the one breaker of the pool.
	get("/a")
	get("/b")
	get("/a")
	if s, body := get("/b"); s != 200 || body != "legacy" {
		t.Fatalf("open breaker: %d %q, want the legacy upstream", s, body)
	}
	resp, err := client().Get("http://" + adminAddr + "/admin/upstreams")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, `"state": "open"`) {
		t.Errorf("GET /admin/upstreams does not show the open breaker:\n%s", body)
	}
	resp, err = client().Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); !strings.Contains(body, `limen_upstream_circuit_state{upstream="primary"} 2`) {
		t.Errorf("metrics lack the open breaker")
	}
	healthy.Store(true)
	eventually(t, 10*time.Second, "the pool to recover", func() bool { _, body := get("/a"); return body == "primary" })
}
