package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWeightedRoundRobinDistribution(t *testing.T) {
	a := backend(t, echo("a"))
	b := backend(t, echo("b"))
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app:
    targets: [{ url: "{{.a}}", weight: 3 }, { url: "{{.b}}", weight: 1 }]
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"a": a.URL, "b": b.URL})
	counts := map[string]int{}
	c := client()
	for range 400 {
		resp, err := c.Get(x.url("public", "/"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		counts[resp.Header.Get("X-Backend")]++
	}
	// Smooth weighted round robin is deterministic: exactly 3:1 over whole cycles.
	if counts["a"] != 300 || counts["b"] != 100 {
		t.Fatalf("distribution %v, want a=300 b=100", counts)
	}
}

func TestPassiveEjectionAndRecovery(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	bad := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		echo("bad")(w, r)
	})
	good := backend(t, echo("good"))
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app:
    targets: [{ url: "{{.bad}}" }, { url: "{{.good}}" }]
    health:
      passive: { consecutive_failures: 2, eject_for: 300ms, max_ejection_percent: 50 }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"bad": bad.URL, "good": good.URL})
	c := client()
	status := func() (int, string) {
		resp, err := c.Get(x.url("public", "/"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Backend")
	}
	for range 6 {
		status()
	}
	// Ejected: every request now goes to the good target.
	for i := range 10 {
		if code, who := status(); code != 200 || who != "good" {
			t.Fatalf("request %d after ejection: %d from %q", i, code, who)
		}
	}
	failing.Store(false)
	eventually(t, 5*time.Second, "the ejected target to come back", func() bool {
		_, who := status()
		return who == "bad"
	})
}

func TestActiveHealthCheckMarksDownAndUp(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	flaky := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !healthy.Load() {
				w.WriteHeader(500)
			}
			return
		}
		echo("flaky")(w, r)
	})
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app:
    targets: [{ url: "{{.flaky}}" }]
    health:
      active: { path: /healthz, interval: 50ms, timeout: 1s, healthy_after: 1, unhealthy_after: 1 }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"flaky": flaky.URL})
	code := func() int {
		resp := get(t, x.url("public", "/x"))
		readBody(t, resp)
		return resp.StatusCode
	}
	if c := code(); c != 200 {
		t.Fatalf("initial status %d", c)
	}
	healthy.Store(false)
	eventually(t, 5*time.Second, "no healthy target -> 503", func() bool { return code() == 503 })
	healthy.Store(true)
	eventually(t, 5*time.Second, "recovery -> 200", func() bool { return code() == 200 })
}

func TestRetriesGoToAnotherTarget(t *testing.T) {
	var hits atomic.Int32
	down := backend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	up := backend(t, echo("up"))
	// A closed port: connect failures.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + l.Addr().String()
	l.Close()
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app:
    targets: [{ url: "{{.down}}" }, { url: "{{.closed}}" }, { url: "{{.up}}" }]
    retries: { attempts: 2, on: [connect_failure, 503], backoff: 1ms }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
  - { name: post, match: { path: /post, methods: [POST] }, upstream: app }
`, map[string]any{"down": down.URL, "closed": closed, "up": up.URL})
	c := client()
	for i := range 9 {
		resp, err := c.Get(x.url("public", "/r"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "up" {
			t.Fatalf("request %d: %d from %q; with 2 retries on distinct targets every request reaches 'up'", i, resp.StatusCode, resp.Header.Get("X-Backend"))
		}
	}
	// POST is not idempotent: it is not retried, so some requests see the 503 or a 502.
	failures := 0
	for range 6 {
		resp, err := c.Post(x.url("public", "/post"), "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failures++
		}
	}
	if failures == 0 {
		t.Fatal("POST was retried although the route did not opt in")
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) {
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app:
    targets: [{ url: "{{.slow}}" }]
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app, timeout: 200ms }
`, map[string]any{"slow": slow.URL})
	resp := get(t, x.url("public", "/"))
	body := readBody(t, resp)
	if resp.StatusCode != 504 || !strings.Contains(body, "upstream_timeout") {
		t.Fatalf("status %d body %q, want 504 upstream_timeout", resp.StatusCode, body)
	}
}

func TestUnreachableUpstreamIs502(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + l.Addr().String()
	l.Close()
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app: { targets: [{ url: "{{.closed}}" }] }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"closed": closed})
	resp := get(t, x.url("public", "/"))
	body := readBody(t, resp)
	if resp.StatusCode != 502 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d type %q body %q, want 502 problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
