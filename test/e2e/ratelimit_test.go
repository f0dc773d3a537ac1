package e2e

import (
	"net/http"
	"testing"
)

// TestRateLimitAcrossReload: the fourth request in a minute is refused with 429 and
// Retry-After, and a reload of a changed config does not hand out a fresh budget.
func TestRateLimitAcrossReload(t *testing.T) {
	t.Parallel()
	cfg := `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
routes:
  - name: limited
    match: { path: /limited }
    respond: { body: "{{.body}}" }
    policies: [{ rate_limit: { limits: [{ requests: 3, per: 1m, name: per-minute }] } }]
`
	vars := map[string]any{"body": "v1"}
	x := start(t, cfg, vars)
	get := func() *http.Response {
		resp, err := client().Get(x.url("public", "/limited"))
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp
	}
	for i := range 3 {
		if resp := get(); resp.StatusCode != 200 || resp.Header.Get("RateLimit-Policy") != `"per-minute";q=3;w=60` {
			t.Fatalf("request %d: %d %v", i, resp.StatusCode, resp.Header)
		}
	}
	resp := get()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("4th request: %d %v", resp.StatusCode, resp.Header)
	}
	vars["body"] = "v2"
	if err := x.reload(cfg); err != nil {
		t.Fatal(err)
	}
	if resp := get(); resp.StatusCode != 429 {
		t.Fatalf("after a reload: %d, want 429 (the counters must survive)", resp.StatusCode)
	}
}
