package e2e

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/redistest"
)

const sharedLimitConfig = `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
{{if .admin}}admin: { addr: "{{.admin}}" }{{end}}
state:
  redis: { url: "{{.redis}}", timeout: 200ms, open_for: 300ms{{if .cluster}}, cluster: true{{end}} }
routes:
  - name: api
    match: { path: /api }
    respond: { body: "ok" }
    policies:
      - rate_limit:
          backend: redis
          on_error: {{.onError}}
          limits: [{ requests: 150, per: 1h, name: hourly }]
`

// TestSharedRateLimitAcrossNodes: three gateways sharing one Redis admit exactly the
// configured limit, whichever node a request hits; with Redis down each applies on_error, and
// they recover by themselves when it is back.
func TestSharedRateLimitAcrossNodes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	vars := map[string]any{"redis": srv.URL(), "cluster": false, "onError": "deny", "admin": ""}
	nodes := []*gw{start(t, sharedLimitConfig, vars), start(t, sharedLimitConfig, vars), start(t, sharedLimitConfig, vars)}
	c := client()
	get := func(x *gw) int {
		resp, err := c.Get(x.url("public", "/api"))
		if err != nil {
			t.Error(err)
			return 0
		}
		readBody(t, resp)
		return resp.StatusCode
	}
	var admitted, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 60 {
				switch get(nodes[(i+j)%3]) {
				case http.StatusOK:
					admitted.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 150 || refused.Load() != 210 {
		t.Fatalf("360 requests over 3 nodes: %d admitted, %d refused; want exactly 150 admitted", admitted.Load(), refused.Load())
	}

	// Redis goes away: on_error: deny answers 503 at once, never a stall.
	srv.Stop()
	for _, x := range nodes {
		if s := get(x); s != http.StatusServiceUnavailable {
			t.Fatalf("Redis down, on_error deny: %d, want 503", s)
		}
	}
	// Back: the nodes reconnect by themselves and the counts are Redis's again (a fresh
	// server, so a fresh budget).
	srv.Restart()
	eventually(t, 10*time.Second, "the nodes to use Redis again", func() bool { return get(nodes[0]) == http.StatusOK })
}

// TestSharedRateLimitOnRedisCluster: the same three gateways with their state in a real
// three-master Redis Cluster admit exactly the configured limit.
func TestSharedRateLimitOnRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t, 3)
	vars := map[string]any{"redis": redistest.ClusterURL(cluster), "cluster": true, "onError": "deny", "admin": ""}
	nodes := []*gw{start(t, sharedLimitConfig, vars), start(t, sharedLimitConfig, vars), start(t, sharedLimitConfig, vars)}
	c := client()
	admitted, refused := 0, 0
	for i := range 200 {
		resp, err := c.Get(nodes[i%3].url("public", "/api"))
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		switch resp.StatusCode {
		case http.StatusOK:
			admitted++
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if admitted != 150 || refused != 50 {
		t.Fatalf("200 requests over 3 nodes on a Redis Cluster: %d admitted, %d refused; want exactly 150 admitted", admitted, refused)
	}
}

// TestRateLimitOnErrorLocal: with on_error: local (the default) a node keeps enforcing the
// limits by itself while Redis is down.
func TestRateLimitOnErrorLocal(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	adminAddr := freePort(t)
	x := start(t, sharedLimitConfig, map[string]any{"redis": srv.URL(), "cluster": false, "onError": "local", "admin": adminAddr})
	srv.Stop()
	c := client()
	codes := map[int]int{}
	for range 160 {
		resp, err := c.Get(x.url("public", "/api"))
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		codes[resp.StatusCode]++
	}
	if codes[200] != 150 || codes[429] != 10 {
		t.Fatalf("Redis down, on_error local: %v; want 150 admitted by the local limit", codes)
	}
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if !strings.Contains(body, "limen_state_errors_total ") || strings.Contains(body, "limen_state_errors_total 0\n") {
		t.Errorf("the Redis outage is not counted in limen_state_errors_total")
	}
}
